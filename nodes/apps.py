from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    default_auto_field = "django.db.models.AutoField"

    def ready(self) -> None:
        from accounts.sessions import logins_ended
        from nodes.consumers import revoke_sockets

        logins_ended.connect(revoke_sockets, dispatch_uid="nodes.revoke_sockets")
