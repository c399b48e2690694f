"""Subject algebra, checked by brute force against ``subject_matches`` over a small universe."""

from __future__ import annotations

import itertools

import hypothesis.strategies as st
from hypothesis import given

from cortex_core.bus_protocol import (
    SUBJECT_HEARTBEAT_ALL,
    SUBJECT_JOB_CANCEL,
    SUBJECT_JOB_RESULT,
    SUBJECT_JOB_SUBMIT,
    durable_coverage,
    heartbeat_subject,
    is_durable_subject,
    subject_matches,
    subject_within,
    subjects_overlap,
    worker_subject,
)
from cortex_core.messages import (
    BusPacket,
    Heartbeat,
    JobCancel,
    JobRequest,
    JobResult,
    JobStatus,
    dedup_id,
)

# Literal subjects of 1-4 tokens over {a, b, c}: "c" stands for any token a pattern doesn't name.
UNIVERSE = [".".join(t) for n in range(1, 5) for t in itertools.product("abc", repeat=n)]
patterns = st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=3).flatmap(
    lambda toks: st.sampled_from([".".join(toks), ".".join([*toks[:-1], ">"])])
)


@given(patterns, patterns)
def test_overlap_means_some_subject_matches_both(a: str, b: str) -> None:
    witness = any(subject_matches(a, s) and subject_matches(b, s) for s in UNIVERSE)
    assert subjects_overlap(a, b) == witness


@given(patterns, patterns)
def test_within_means_every_match_of_one_matches_the_other(p: str, f: str) -> None:
    matching = [s for s in UNIVERSE if subject_matches(p, s)]
    assert subject_within(p, f) == all(subject_matches(f, s) for s in matching)


def test_job_subjects_are_durable_and_heartbeats_are_not() -> None:
    for subject in (
        SUBJECT_JOB_SUBMIT,
        SUBJECT_JOB_RESULT,
        SUBJECT_JOB_CANCEL,
        "job.echo",
        "job.chat.llm",
        worker_subject("w1"),
    ):
        assert is_durable_subject(subject), subject
    assert not is_durable_subject(heartbeat_subject("w1"))
    assert durable_coverage(SUBJECT_HEARTBEAT_ALL) == (False, False)
    assert durable_coverage("job.>") == (True, True)
    assert durable_coverage(">") == (True, False)  # mixed: both transports


def test_dedup_ids_tell_the_steps_of_a_job_apart() -> None:
    def packet(payload: object) -> BusPacket:
        return BusPacket(trace_id="", sender_id="t", created_at=0.0, payload=payload)  # type: ignore[arg-type]

    def request(attempt: int) -> BusPacket:
        return packet(JobRequest(job_id="j", topic="job.echo", context_ptr="", attempt=attempt))

    ids = [
        dedup_id(request(0), SUBJECT_JOB_SUBMIT),
        dedup_id(request(1), "worker.w1.jobs"),
        dedup_id(request(2), "worker.w2.jobs"),
        dedup_id(
            packet(JobResult(job_id="j", status=JobStatus.COMPLETED, worker_id="w1")),
            SUBJECT_JOB_RESULT,
        ),
        dedup_id(
            packet(JobResult(job_id="j", status=JobStatus.COMPLETED, worker_id="w2")),
            SUBJECT_JOB_RESULT,
        ),
        dedup_id(packet(JobCancel(job_id="j")), SUBJECT_JOB_CANCEL),
    ]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "j"
    # A submit that says attempt 1 (a bus-level client's default) still differs from dispatch 1.
    assert dedup_id(request(1), SUBJECT_JOB_SUBMIT) != dedup_id(request(1), "worker.w1.jobs")
    assert dedup_id(request(1), "worker.w1.jobs") == dedup_id(request(1), "job.echo")
    assert (
        dedup_id(packet(Heartbeat(worker_id="w", pool="p", max_parallel_jobs=1)), "sys.heartbeat.w")
        is None
    )
