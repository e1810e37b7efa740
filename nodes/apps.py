from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from accounts.authentication import register_node_rows
        from accounts.sessions import logins_ended
        from accounts.signals import rights_changed
        from nodes import metrics
        from nodes.consumers import follow_rights, revoke_sockets
        from nodes.models import Node
        from vantage6.api.observability import register_gauges

        register_node_rows(Node.objects.all)
        logins_ended.connect(revoke_sockets, dispatch_uid="nodes.revoke_sockets")
        rights_changed.connect(follow_rights, dispatch_uid="nodes.follow_rights")
        register_gauges(metrics.gauges)
