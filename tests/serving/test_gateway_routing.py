import pytest

from serving.gateway.routing import bucket, end_user_pseudonym, pick_upstream
from serving.selectors import Route, Upstream
from tests.serving.gateway_support import chat, gateway_client, records, serve, stop, wait_routed

STABLE = Upstream("stable", 1, "http://stable/v1", "s")
CANARY = Upstream("canary", 2, "http://canary/v1", "c")


def route(weight: int, canary: Upstream | None = CANARY) -> Route:
    return Route(
        deployment_id=1,
        project_id=1,
        name="chat",
        stable=STABLE,
        canary=canary,
        canary_weight=weight,
        shadow=None,
        guardrails={},
        logging_policy="off",
        logging_sample_percent=0,
        retention_days=30,
        price_per_1k_tokens=0,
        price_per_gpu_hour=0,
    )


@pytest.mark.parametrize("weight", [5, 10, 25, 50, 90])
def test_the_split_is_within_3_points_of_the_weight_over_2000_users(weight):
    users = [f"user-{i}" for i in range(2000)]

    canary = sum(pick_upstream(route(weight), u) is CANARY for u in users)

    assert abs(canary / 2000 * 100 - weight) <= 3


def test_the_split_is_sticky_per_user():
    users = [f"user-{i}" for i in range(500)]

    first = [pick_upstream(route(30), u).arm for u in users]
    again = [pick_upstream(route(30), u).arm for u in users]

    assert first == again


def test_users_on_the_canary_stay_there_as_its_weight_rises():
    users = [f"user-{i}" for i in range(500)]

    at_10 = {u for u in users if pick_upstream(route(10), u) is CANARY}
    at_50 = {u for u in users if pick_upstream(route(50), u) is CANARY}

    assert at_10 <= at_50
    assert len(at_10) < len(at_50)


def test_a_canary_without_a_ready_engine_gets_no_traffic():
    assert all(pick_upstream(route(100, canary=None), f"u{i}") is STABLE for i in range(100))


def test_weight_zero_sends_everyone_to_stable():
    assert all(pick_upstream(route(0), f"u{i}") is STABLE for i in range(100))


def test_buckets_and_pseudonyms_are_stable_and_keyed():
    assert bucket("alice") == bucket("alice")
    assert end_user_pseudonym("alice") == end_user_pseudonym("alice")
    assert end_user_pseudonym("alice") != end_user_pseudonym("bob")
    assert "alice" not in end_user_pseudonym("alice")
    assert end_user_pseudonym("") == ""


@pytest.mark.django_db(transaction=True)
def test_the_server_sends_each_user_to_the_arm_the_split_names(project, engineer, asgi_server):
    s = serve(project, engineer, canary_weight=50)
    expected = route(50)
    users = [f"user-{i}" for i in range(20)]
    try:
        with gateway_client(asgi_server, s.raw_key) as client:
            wait_routed(client, s.dep.name)
            answers = {
                u: [chat(client, s.dep.name, user=u).json() for _ in range(2)] for u in users
            }
    finally:
        stop(s)

    for user, (first, second) in answers.items():
        arm = first["choices"][0]["message"]["content"].split()[0]
        assert arm == pick_upstream(expected, user).arm
        assert second["choices"][0]["message"]["content"].split()[0] == arm
    rows = records(40, deployment_id=s.dep.pk)
    assert {r.arm for r in rows} == {"stable", "canary"}
    by_arm = {r.arm: r.model_version_id for r in rows}
    assert by_arm == {"stable": s.dep.stable_version_id, "canary": s.dep.canary_version_id}
