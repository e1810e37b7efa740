from rest_framework.routers import SimpleRouter

from accounts.views import RuleViewSet

router = SimpleRouter(trailing_slash=False)
router.register("rule", RuleViewSet, basename="rule")

urlpatterns = router.urls
