"""Organizations, the collaborations they form, studies within those, and algorithm stores."""

from __future__ import annotations

import base64

from django.db import models


class Organization(models.Model):
    name = models.CharField(max_length=128, unique=True)
    domain = models.CharField(max_length=128, blank=True, default="")
    address1 = models.CharField(max_length=128, blank=True, default="")
    address2 = models.CharField(max_length=128, null=True, blank=True)
    zipcode = models.CharField(max_length=128, blank=True, default="")
    country = models.CharField(max_length=128, blank=True, default="")
    # The base64-decoded bytes of the submitted key (itself base64 of a PEM); emitted base64 again.
    public_key_bytes = models.BinaryField(null=True, blank=True)

    class Meta:
        db_table = "organization"
        # Member lists embedded with include=organizations come out in a stable order.
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    @property
    def public_key(self) -> str:
        return base64.b64encode(bytes(self.public_key_bytes)).decode() if self.public_key_bytes else ""


class Collaboration(models.Model):
    name = models.CharField(max_length=128, unique=True)
    encrypted = models.BooleanField(default=True)
    organizations = models.ManyToManyField(Organization, related_name="collaborations", db_table="member")

    class Meta:
        db_table = "collaboration"

    def __str__(self) -> str:
        return self.name


class Study(models.Model):
    name = models.CharField(max_length=128, unique=True)
    collaboration = models.ForeignKey(Collaboration, on_delete=models.CASCADE, related_name="studies")
    organizations = models.ManyToManyField(Organization, related_name="studies", db_table="study_member")

    class Meta:
        db_table = "study"
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.name


class AlgorithmStore(models.Model):
    """A link of an algorithm store (by URL) to a collaboration, or to all when ``collaboration`` is null."""

    name = models.CharField(max_length=128)
    url = models.CharField(max_length=512)
    collaboration = models.ForeignKey(
        Collaboration, null=True, blank=True, on_delete=models.CASCADE, related_name="algorithm_stores"
    )
    # Linked by a global administrator: the store may receive the tokens of users creating tasks.
    trusted = models.BooleanField(default=False)

    class Meta:
        db_table = "algorithmstore"

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"
