from django.db import migrations, models


class Migration(migrations.Migration):
    """Socket sessions no longer keep the handshake's headers (with the raw bearer token), only the
    claims of a verified token."""

    dependencies = [
        ('nodes', '0004_node_metrics'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='socketsession',
            name='headers',
        ),
        migrations.AddField(
            model_name='socketsession',
            name='auth',
            field=models.JSONField(default=dict),
        ),
    ]
