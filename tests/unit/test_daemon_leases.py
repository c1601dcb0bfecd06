"""Which daemons are certainly dead (this host, pid gone) and how a dead daemon's job is taken
over: once, by one daemon, only after its lease ran out, and then settled only by its new
holder (both stores)."""

import os
import socket
import subprocess
import sys
import time

from emberd.daemons import certainly_dead, live_others, new_daemon_id, pid_alive
from emberd.registry import Registry
from tests.unit.test_registry import BATCH


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_certainly_dead_means_this_host_and_its_pid_gone(registry_target):
    r = Registry(registry_target)
    here, dead = socket.gethostname(), _dead_pid()
    r.heartbeat("gone", here, dead, "", 0.0)
    r.heartbeat("alive", here, os.getpid(), "", 0.0)
    r.heartbeat("elsewhere", "another-host", dead, "", 0.0)
    daemons = {d.id: d for d in r.daemons()}
    assert pid_alive(os.getpid()) and not pid_alive(dead)
    assert certainly_dead("gone", "me", daemons) and certainly_dead(None, "me", daemons) and certainly_dead("me", "me", daemons)
    assert not certainly_dead("alive", "me", daemons)
    assert not certainly_dead("elsewhere", "me", daemons)  # another host: only its lease tells
    assert certainly_dead("unknown", "me", daemons)  # no row: it stopped cleanly (or never claimed anything)
    assert [d.id for d in live_others(r.daemons(), "alive")] == ["elsewhere"]
    assert new_daemon_id("given") == "given" and new_daemon_id() != new_daemon_id()
    r.close()


def test_an_expired_job_is_taken_over_once_and_settled_by_its_new_holder(registry_target):
    r = Registry(registry_target)
    assert r.create_job("j", "m", BATCH) and r.claim_job("j", "A", lease_s=30)
    now = time.time()
    assert not r.take_over("j", "A", "B", 30, expired_before=now), "A's lease still runs"
    later = now + 60
    assert [j.id for j in r.expired_jobs(later)] == ["j"]
    assert r.take_over("j", "A", "B", 30, expired_before=later)
    assert not r.take_over("j", "A", "C", 30, expired_before=later), "B took it first"
    assert r.job("j").owner == "B"
    event = {"kind": "state", "state": "INTERRUPTED"}
    assert not r.settle_job("j", ("RUNNING",), event, owner="A", state="INTERRUPTED"), "A no longer holds it"
    assert r.settle_job("j", ("RUNNING",), event, owner="B", state="INTERRUPTED")
    assert r.job("j").state == "INTERRUPTED" and [e[2] for e in r.events("j")] == [event]
    # a row from before owners (owner NULL) is taken over without a lease
    assert r.create_job("old", "m2", BATCH)
    r.update_job("old", state="RUNNING")
    assert r.take_over("old", None, "B", 30) and r.job("old").owner == "B"
    r.close()
