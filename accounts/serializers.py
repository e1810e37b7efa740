"""Output and input serializers of users, roles and rules."""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import Rule
from vantage6.api.fields import ListLinkField


class RuleOutput(serializers.ModelSerializer):
    users = ListLinkField("user", "rule_id")

    class Meta:
        model = Rule
        fields = ["id", "name", "description", "scope", "operation", "users"]
