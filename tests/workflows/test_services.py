"""The composition root: one Services per process, the same wiring without the web app."""
from __future__ import annotations

import datetime as dt

import pytest

from registry.infra.migrate import upgrade
from registry.infra.settings import finish_settings, load_settings
from tests.regulator_builders import make_complaint
from workflows import services as services_module
from workflows.services import build_services

SETTINGS = ("INSTANCE_DIR", "FILES_DIR", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "BLOOM_CAPACITY", "BLOOM_SHARDS")


@pytest.fixture
def services(stack):
    from registry.institutions.authorities import seed_authorities

    built = build_services(finish_settings({**load_settings({}), **stack}))
    upgrade(built.engine)
    with built.sessions() as session:
        seed_authorities(session)
        session.commit()
    yield built
    built.close()


def test_services_built_without_the_web_app_seal_complaint_events(services):
    with services.sessions() as session:
        make_complaint(session)
    with services.sessions() as session:
        result = services.audit_chain.verify(session)
    assert result.ok and result.checked == 2


def test_a_background_import_takes_the_same_pipeline_as_the_cli(services):
    moment = dt.datetime(2026, 4, 2, tzinfo=dt.timezone.utc)
    later = services.registration.at(lambda: moment)
    assert later._bloom is services.registration._bloom and later._clock() == moment


def test_an_rq_job_carries_ids_only(services, stack):
    if stack["STACK"] != "postgres-redis":
        assert type(services.jobs).__name__ == "ThreadQueue"
        return
    queue = services.jobs.queue
    queue.empty()
    confirmed = dt.datetime(2026, 4, 2, 8, 30, tzinfo=dt.timezone.utc)
    services.jobs.enqueue("import", 42, confirmed_at=confirmed)
    (job,) = queue.jobs
    try:
        assert job.func_name == "workflows.jobs.rq_upload_job"
        assert job.args == ("import", 42, confirmed.isoformat()) and not job.kwargs
        assert stack["DATABASE_URL"] not in repr(job.args)
    finally:
        queue.empty()


def test_the_worker_builds_its_services_once_per_process_from_its_environment(stack, monkeypatch):
    for name in SETTINGS:
        monkeypatch.setenv(name, str(stack[name]))
    monkeypatch.setattr(services_module, "_per_process", {})
    first = services_module.services_from_environment()
    try:
        assert services_module.services_from_environment() is first
        assert first.settings.database_url == stack["DATABASE_URL"]
    finally:
        first.close()
