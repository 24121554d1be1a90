"""Child names cannot collide across jobs, stay valid DNS labels short enough for the pods derived from them, and are
what status reports and the operator looks up."""

from __future__ import annotations

import re

from llm_platform.api import parse_job
from llm_platform.operator.naming import CHILD_NAME_LIMIT, child_name, service_account_name
from llm_platform.operator.render import render_job

from .cluster import stays, wait_for
from .helpers import DATA, child, job_dict

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_job_team_stage_x_data_and_job_team_x_stage_data_get_different_names():
    assert child_name("ns", "team", "x-data") != child_name("ns", "team-x", "data")
    assert child_name("ns", "team", "x-data").startswith("team-x-data-")


def test_names_are_stable_and_the_hash_covers_the_namespace():
    assert child_name("a", "job", "data") == child_name("a", "job", "data")
    assert child_name("a", "job", "data") != child_name("b", "job", "data")


def test_the_longest_names_fit_the_limit_and_stay_apart():
    job, stage = "j" * 30, "s" * 16  # the longest names the spec allows
    names = {child_name("ns", job, stage), child_name("ns", job, "s" * 15 + "t"), service_account_name("ns", job)}
    assert len(names) == 3
    for name in names:
        assert len(name) <= CHILD_NAME_LIMIT and DNS_1035.match(name), name
    # the training operator's pod names stay DNS labels
    assert len(child_name("ns", job, stage) + "-worker-4095") <= 63


def test_rendered_objects_of_two_such_jobs_do_not_share_a_name():
    def names(job_name, stage_name):
        body = job_dict({**DATA, "name": stage_name}, name=job_name)
        return {(d["kind"], d["metadata"]["name"]) for d in render_job(parse_job(body))}

    assert names("team", "x-data").isdisjoint(names("team-x", "data"))


def test_two_jobs_whose_names_used_to_collide_both_run_and_report_their_own_child(cluster):
    cluster.start_operator()
    cluster.apply(job_dict({**DATA, "name": "x-data"}, name="team"))
    cluster.apply(job_dict({**DATA, "name": "data"}, name="team-x"))
    first = wait_for(lambda: cluster.child("Job", child("team", "x-data")), what="team's Job")
    second = wait_for(lambda: cluster.child("Job", child("team-x", "data")), what="team-x's Job")
    assert first["metadata"]["ownerReferences"][0]["name"] == "team"
    assert second["metadata"]["ownerReferences"][0]["name"] == "team-x"
    cluster.finish("Job", child("team-x", "data"), "Succeeded")
    wait_for(lambda: cluster.phase("team-x") == "Succeeded", what="team-x to succeed")
    assert cluster.stage("team-x", "data")["child"] == "Job/" + child("team-x", "data")
    assert stays(lambda: cluster.phase("team") == "Running", seconds=0.5)  # its own child still runs
    assert cluster.stage("team", "x-data")["child"] == "Job/" + child("team", "x-data")
