from rest_framework.routers import SimpleRouter

from collaborations.views import (
    AlgorithmStoreViewSet,
    CollaborationViewSet,
    OrganizationViewSet,
    StudyViewSet,
)

router = SimpleRouter(trailing_slash=False)
router.register("organization", OrganizationViewSet, basename="organization")
router.register("collaboration", CollaborationViewSet, basename="collaboration")
router.register("study", StudyViewSet, basename="study")
router.register("algorithmstore", AlgorithmStoreViewSet, basename="algorithmstore")

urlpatterns = router.urls
