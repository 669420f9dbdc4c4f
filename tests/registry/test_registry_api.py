"""The registry's MLflow-compatible API on a real store: models, versions, stages, aliases, URIs,
search, and refusals that write nothing. The lifecycle test runs on both engines; the detailed ones
on delta-rs (the registry code above the engine is the same)."""

from __future__ import annotations

import shutil

import pytest

import deltaflow
import deltaflow.pyfunc
from deltaflow.errors import AlreadyExists, InvalidArgument, NotFound
from tests.registry.conftest import INPUT, log_size

rust_only = pytest.mark.parametrize("engine", ["rust"], indirect=True)


def _predict(uri: str) -> list:
    return list(deltaflow.pyfunc.load_model(uri).predict(INPUT))


def test_lifecycle_and_every_uri_form(client, model_dir, user):
    created = client.create_registered_model("churn", tags={"team": "growth"}, description="churn model")
    assert (created.name, created.tags, created.description, created.user_id) == ("churn", {"team": "growth"},
                                                                                 "churn model", "owner")
    with deltaflow.start_run() as run:
        info = deltaflow.pyfunc.log_model(name="model", python_model=__import__("tests.registry.conftest",
                                          fromlist=["Scaled"]).Scaled(2.0), registered_model_name="churn")
    assert info.registered_model_version == 1
    v2 = client.create_model_version("churn", model_dir(3.0), description="second")
    assert (v2.version, v2.current_stage, v2.description, v2.status) == (2, "None", "second", "READY")
    v1 = client.get_model_version("churn", "1")  # versions may be given as strings, as over REST
    assert v1.run_id == run.info.run_id and v1.source == f"runs:/{run.info.run_id}/model"

    client.transition_model_version_stage("churn", 1, "staging")  # stages are case-insensitive
    client.transition_model_version_stage("churn", 2, "Production", comment="ship it")
    client.set_registered_model_alias("churn", "champion", 2)

    # Every URI form loads the right version.
    assert _predict(f"runs:/{run.info.run_id}/model") == [2.0, 4.0, 6.0]
    assert _predict("models:/churn/1") == [2.0, 4.0, 6.0]
    assert _predict("models:/churn/Staging") == [2.0, 4.0, 6.0]
    assert _predict("models:/churn/2") == [3.0, 6.0, 9.0]
    assert _predict("models:/churn/production") == [3.0, 6.0, 9.0]
    assert _predict("models:/churn/latest") == [3.0, 6.0, 9.0]
    assert _predict("models:/churn@champion") == [3.0, 6.0, 9.0]
    assert _predict(v2.storage_location) == [3.0, 6.0, 9.0]

    latest = {v.current_stage: v.version for v in client.get_latest_versions("churn")}
    assert latest == {"Staging": 1, "Production": 2}
    assert [v.version for v in client.get_latest_versions("churn", ["Production"])] == [2]
    model = client.get_registered_model("churn")
    assert model.aliases == {"champion": 2}
    assert client.get_model_version_by_alias("churn", "champion").aliases == ["champion"]

    renamed = client.rename_registered_model("churn", "churn_v2")
    assert renamed.aliases == {"champion": 2} and [v.version for v in renamed.latest_versions] == [1, 2]
    assert _predict("models:/churn_v2@champion") == [3.0, 6.0, 9.0]
    with pytest.raises(NotFound, match="registered model 'churn' does not exist"):
        client.get_registered_model("churn")

    client.delete_model_version("churn_v2", 2)
    assert client.get_registered_model("churn_v2").aliases == {}  # the alias went with its version
    with pytest.raises(NotFound, match="no version 2; its versions are 1"):
        client.get_model_version("churn_v2", 2)
    client.delete_registered_model("churn_v2")
    assert client.search_registered_models() == []


@rust_only
def test_version_numbers_are_never_reused(client, model_dir, user):
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", model_dir())
    client.delete_model_version("m", 3)
    assert client.create_model_version("m", model_dir()).version == 4
    client.delete_registered_model("m")
    client.create_registered_model("m")  # a new model of the same name starts again at 1
    assert client.create_model_version("m", model_dir()).version == 1


@rust_only
def test_register_model_creates_the_model_once(client, model_dir, user):
    first = deltaflow.register_model(model_dir(1.0), "auto", tags={"k": "v"})
    second = deltaflow.register_model(model_dir(2.0), "auto")
    assert (first.version, second.version, first.tags) == (1, 2, {"k": "v"})
    with pytest.raises(AlreadyExists, match="registered model 'auto' already exists"):
        client.create_registered_model("auto")


@rust_only
def test_stage_transitions_archive_existing(client, model_dir, user):
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", model_dir())
    client.transition_model_version_stage("m", 1, "Production")
    client.transition_model_version_stage("m", 2, "Production")  # without archiving: two in Production
    assert sorted(v.version for v in client.search_model_versions("current_stage = 'Production'")) == [1, 2]
    client.transition_model_version_stage("m", 3, "Production", archive_existing_versions=True)
    stages = {v.version: v.current_stage for v in client.search_model_versions("name = 'm'")}
    assert stages == {1: "Archived", 2: "Archived", 3: "Production"}
    activity = client.get_model_version_activity("m", 1)
    assert [(a.activity_type, a.from_stage, a.to_stage) for a in activity[-1:]] == [
        ("SYSTEM_TRANSITION", "Production", "Archived")]


@rust_only
def test_aliases(client, model_dir, user):
    client.create_registered_model("m")
    client.create_model_version("m", model_dir(1.0))
    client.create_model_version("m", model_dir(2.0))
    client.set_registered_model_alias("m", "champion", 1)
    client.set_registered_model_alias("m", "champion", 2)  # an alias moves; it never points at two
    client.set_registered_model_alias("m", "challenger", 1)
    assert client.get_registered_model("m").aliases == {"champion": 2, "challenger": 1}
    assert client.get_model_version("m", 2).aliases == ["champion"]
    client.delete_registered_model_alias("m", "challenger")
    with pytest.raises(NotFound, match="no alias 'challenger' \\(its aliases: champion\\)"):
        client.get_model_version_by_alias("m", "challenger")
    with pytest.raises(NotFound, match="no alias 'ghost'"):
        client.delete_registered_model_alias("m", "ghost")


@rust_only
def test_tags_and_descriptions(client, model_dir, user):
    client.create_registered_model("m")
    client.create_model_version("m", model_dir(), tags={"a": "1"})
    client.set_registered_model_tag("m", "owner_team", "risk")
    client.set_model_version_tag("m", 1, "validated", True)
    client.set_model_version_tag("m", key="by_stage", value="x", stage="None")
    client.delete_model_version_tag("m", 1, "a")
    client.update_registered_model("m", "new description")
    client.update_model_version("m", 1, "v1 description")
    model, version = client.get_registered_model("m"), client.get_model_version("m", 1)
    assert (model.tags, model.description) == ({"owner_team": "risk"}, "new description")
    assert (version.tags, version.description) == ({"validated": "True", "by_stage": "x"}, "v1 description")
    client.delete_registered_model_tag("m", "owner_team")
    assert client.get_registered_model("m").tags == {}
    with pytest.raises(NotFound, match="has no tag 'owner_team'"):
        client.delete_registered_model_tag("m", "owner_team")


@rust_only
def test_search_filters_order_and_pages(client, model_dir, user):
    for name, team in (("alpha", "a"), ("beta", "b"), ("main.ml.gamma", "a")):
        client.create_registered_model(name, tags={"team": team})
        for _ in range(2):
            client.create_model_version(name, model_dir(), tags={"team": team})
    names = lambda models: [m.name for m in models]  # noqa: E731
    assert names(client.search_registered_models()) == ["alpha", "beta", "main.ml.gamma"]
    assert names(client.search_registered_models("tags.team = 'a'")) == ["alpha", "main.ml.gamma"]
    assert names(client.search_registered_models("name LIKE 'main.%'")) == ["main.ml.gamma"]
    assert names(client.search_registered_models("name ILIKE 'ALP%'")) == ["alpha"]
    assert names(client.search_registered_models("name IN ('beta', 'alpha')")) == ["alpha", "beta"]
    assert names(client.search_registered_models(order_by=["name DESC"])) == ["main.ml.gamma", "beta", "alpha"]
    first = client.search_registered_models(max_results=2)
    assert names(first) == ["alpha", "beta"] and first.token
    rest = client.search_registered_models(max_results=2, page_token=first.token)
    assert names(rest) == ["main.ml.gamma"] and rest.token is None

    versions = client.search_model_versions("name = 'beta'")
    assert [(v.name, v.version) for v in versions] == [("beta", 2), ("beta", 1)]  # newest first
    assert len(client.search_model_versions("version_number > 1")) == 3
    assert len(client.search_model_versions("tags.team = 'a' AND version_number = 1")) == 2
    ordered = client.search_model_versions(order_by=["version_number ASC", "name DESC"])
    assert [(v.name, v.version) for v in ordered][:3] == [("main.ml.gamma", 1), ("beta", 1), ("alpha", 1)]
    for hostile in ("name = 'x' OR 1=1", "name = 'x'; DROP TABLE registry_events", "params.a = 'b'", "name = 'x"):
        with pytest.raises(InvalidArgument):
            client.search_model_versions(hostile)
    with pytest.raises(InvalidArgument, match="unknown registered model attribute"):
        client.search_registered_models("run_id = 'x'")


@rust_only
def test_registered_copy_outlives_the_run_artifacts(client, user):
    from tests.registry.conftest import Scaled

    with deltaflow.start_run() as run:
        deltaflow.pyfunc.log_model(name="model", python_model=Scaled(5.0), registered_model_name="m")
    shutil.rmtree(client.get_run(run.info.run_id).info.artifact_uri)  # e.g. the run was purged by gc
    assert _predict("models:/m/1") == [5.0, 10.0, 15.0]


@rust_only
def test_bad_input_is_refused_and_writes_nothing(client, model_dir, user, tmp_path):
    client.create_registered_model("m")
    client.create_model_version("m", model_dir())
    before = log_size(client)
    cases = [
        (lambda: client.create_registered_model("a/b"), InvalidArgument, "not allowed"),
        (lambda: client.create_registered_model(" padded"), InvalidArgument, "surrounding spaces"),
        (lambda: client.create_registered_model("a.b"), InvalidArgument, "catalog.schema.model"),
        (lambda: client.create_registered_model("a..b.c"), InvalidArgument, "catalog.schema.model"),
        (lambda: client.create_registered_model("m"), AlreadyExists, "already exists"),
        (lambda: client.transition_model_version_stage("m", 1, "Prod"), InvalidArgument,
         "stage 'Prod' is not one of None, Staging, Production, Archived"),
        (lambda: client.transition_model_version_stage("m", 9, "Staging"), NotFound, "has no version 9"),
        (lambda: client.transition_model_version_stage("m", 1, "Archived", archive_existing_versions=True),
         InvalidArgument, "Staging or Production"),
        (lambda: client.transition_model_version_stage("ghost", 1, "Staging"), NotFound, "'ghost' does not exist"),
        (lambda: client.get_model_version("m", 0), InvalidArgument, "positive integer"),
        (lambda: client.get_model_version("m", "one"), InvalidArgument, "positive integer"),
        (lambda: client.set_registered_model_alias("m", "latest", 1), InvalidArgument, "reserved"),
        (lambda: client.set_registered_model_alias("m", "v2", 1), InvalidArgument, "reserved"),
        (lambda: client.set_registered_model_alias("m", "has space", 1), InvalidArgument, "letters, digits"),
        (lambda: client.set_registered_model_alias("m", "ok", 5), NotFound, "has no version 5"),
        (lambda: client.create_model_version("m", str(tmp_path)), InvalidArgument, "no MLmodel file"),
        (lambda: client.create_model_version("m", "models:/m"), InvalidArgument, "malformed model URI"),
        (lambda: client.create_model_version("m", "runs:/" + "0" * 32 + "/model"), NotFound, "0" * 32),
        (lambda: client.create_model_version("m", "runs:/nope/model"), InvalidArgument, "run_id 'nope'"),
        (lambda: client.set_model_version_tag("m", 1, "", "v"), InvalidArgument, "tag key"),
        (lambda: client.set_model_version_tag("m", 1, "k", "x" * 5001), InvalidArgument, "limit is 5000"),
        (lambda: client.get_latest_versions("m", "Production"), InvalidArgument, "list of stage names"),
        (lambda: client.search_registered_models(max_results=0), InvalidArgument, "max_results"),
        (lambda: deltaflow.pyfunc.load_model("models:/m/Staging"), NotFound, "no version in stage Staging"),
        (lambda: deltaflow.pyfunc.load_model("models:/m/7"), NotFound, "has no version 7"),
        (lambda: deltaflow.pyfunc.load_model("models:/m@nobody"), NotFound, "no alias 'nobody'"),
        (lambda: deltaflow.pyfunc.load_model("models:/m/1/extra"), InvalidArgument, "extra path segments"),
    ]
    for call, error, text in cases:
        with pytest.raises(error) as raised:
            call()
        assert text in str(raised.value), (text, str(raised.value))
    assert log_size(client) == before
    assert [v.version for v in client.search_model_versions("name = 'm'")] == [1]
