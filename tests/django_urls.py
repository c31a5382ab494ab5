"""URLs for tests that go through Django's test client."""

urlpatterns: list[object] = []
