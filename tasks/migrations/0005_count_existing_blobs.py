"""Count the blobs stored before their sizes were recorded (0004): they hold room of their organization
too. An input belongs to the organization that created the task, a result to the run's organization."""

from django.db import migrations


def count_existing(apps, schema_editor):
    from tasks.blobs import blob_storage, is_blob_id

    storage = blob_storage()
    if storage is None:
        return
    Blob = apps.get_model("tasks", "Blob")
    Run = apps.get_model("tasks", "Run")
    counted = set(Blob.objects.values_list("name", flat=True))
    found = []
    runs = Run.objects.filter(blob_storage_used=True).values_list("input", "task__init_org_id", "result", "organization_id")
    for input_, input_org, result, result_org in runs.iterator():
        for name, organization_id in ((input_, input_org), (result, result_org)):
            if is_blob_id(name) and name not in counted and storage.exists(name):
                counted.add(name)
                found.append(Blob(name=name, organization_id=organization_id, size=storage.size(name)))
    Blob.objects.bulk_create(found, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0004_blob"),
    ]

    operations = [migrations.RunPython(count_existing, migrations.RunPython.noop)]
