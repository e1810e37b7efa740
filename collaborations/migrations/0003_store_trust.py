from django.db import migrations, models


def trust_stores_of_all_collaborations(apps, schema_editor) -> None:
    # Only a global administrator can link a store to all collaborations.
    store = apps.get_model("collaborations", "AlgorithmStore")
    store.objects.filter(collaboration__isnull=True).update(trusted=True)


class Migration(migrations.Migration):
    dependencies = [
        ("collaborations", "0002_organization_ordering"),
    ]

    operations = [
        migrations.AddField(
            model_name="algorithmstore",
            name="trusted",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(trust_stores_of_all_collaborations, migrations.RunPython.noop),
    ]
