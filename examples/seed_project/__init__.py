"""The throttling chapter of django-modern-rest's docs, on plain Django views.

Every example of the chapter is ported to ``luathrottle.django`` in
``seed_project.views``; ``seed_project.sessions`` lists the requests of the
chapter's "Run result" blocks, which ``luathrottle demo --seed`` replays.
"""
