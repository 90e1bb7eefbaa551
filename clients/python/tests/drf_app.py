"""The test Django project's views and URLs: what an app protected by multitoken looks like."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from multitoken.contrib.drf import HasScope


class WhoAmI(APIView):
    """Authentication and IsAuthenticated come from REST_FRAMEWORK's defaults (see conftest)."""

    def get(self, request):
        return Response(
            {
                "user": request.user.get_username(),
                "token_id": request.auth.token_id,
                "token_username": request.auth.username,
                "scopes": sorted(request.auth.scopes),
                "read_only": request.auth.read_only,
            }
        )

    def post(self, request):
        return Response({"written": True})


class Billing(APIView):
    permission_classes = [HasScope.with_scopes("billing")]

    def get(self, request):
        return Response({"invoices": []})


urlpatterns = [
    path("whoami/", WhoAmI.as_view()),
    path("billing/", Billing.as_view()),
]
