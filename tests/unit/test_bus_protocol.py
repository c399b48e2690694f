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


def test_dedup_ids_of_results_and_cancels_name_their_attempt() -> None:
    def result(attempt: int, worker_id: str = "w1") -> str | None:
        payload = JobResult(
            job_id="j", status=JobStatus.TIMEOUT, worker_id=worker_id, attempt=attempt
        )
        packet = BusPacket(trace_id="", sender_id=worker_id, created_at=0.0, payload=payload)
        return dedup_id(packet, SUBJECT_JOB_RESULT)

    def cancel(attempt: int, sender_id: str = "s1", reason: str = "overran") -> str | None:
        payload = JobCancel(job_id="j", reason=reason, attempt=attempt)
        packet = BusPacket(trace_id="", sender_id=sender_id, created_at=0.0, payload=payload)
        return dedup_id(packet, SUBJECT_JOB_CANCEL)

    assert result(2) == "j.result.2.w1"
    assert result(0) == "j.result.0.w1"  # a worker that doesn't say which attempt
    assert cancel(3) == "j.cancel.3"
    assert cancel(0) == "j.cancel.0"  # a client's cancel of the job
    # The retry of an overrun on the same worker reports again: not a duplicate of attempt 1.
    assert len({result(0), result(1), result(2), result(1, "w2")}) == 4
    # A client's cancel after the sweep cancelled attempt 1, and the sweep's cancel of
    # attempt 2 after that of attempt 1, all go out.
    assert len({cancel(0), cancel(1), cancel(2)}) == 3
    # Two scheduler replicas that both give up on attempt 2 publish one cancel between them.
    assert cancel(2, "s1", "ran past 1 s") == cancel(2, "s2", "ran past its timeout")
