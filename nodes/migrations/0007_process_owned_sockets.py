from django.db import migrations, models


class Migration(migrations.Migration):
    """Socket.IO sessions, rooms and queued packets live in the memory of the process that owns them;
    the database keeps which process holds each identity's newest connection."""

    dependencies = [
        ("nodes", "0006_socket_liveness"),
    ]

    operations = [
        migrations.DeleteModel(name="SocketPacket"),
        migrations.DeleteModel(name="SocketRoom"),
        migrations.DeleteModel(name="SocketSession"),
        migrations.AddField(
            model_name="socketconnection",
            name="process",
            field=models.CharField(db_index=True, default="", max_length=32),
        ),
    ]
