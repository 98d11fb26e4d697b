"""Repeats by one person become duplicates; one problem reported by many becomes an incident."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from inbox_daemon.pipeline.dedupe import (
    DedupeIndex,
    DedupeResult,
    DedupeSettings,
    Seen,
    persons_of,
)
from inbox_daemon.pipeline.entities import extract_entities
from tests.factories import NOW

SETTINGS = DedupeSettings(duplicate_window_s=7 * 86400, incident_window_s=6 * 3600)


def seen(
    reference: str, channel: str, sender: str, category: str, text: str, minutes: int = 0
) -> Seen:
    entities = extract_entities(text)
    return Seen(
        reference,
        NOW + timedelta(minutes=minutes),
        persons_of(channel, sender, entities),
        category,
        entities,
        " ".join(text.lower().split()),
    )


def feed(index: DedupeIndex, item: Seen):
    verdict = index.check(item)
    index.add(replace(item, duplicate=verdict.duplicate_of is not None), verdict)
    return verdict


def test_same_person_same_problem_is_a_duplicate_of_the_first_message() -> None:
    index = DedupeIndex(SETTINGS)
    feed(index, seen("FB-1", "twitter", "@hodl", "deposit_withdrawal", "40 ETH withdrawal stuck"))
    again = feed(
        index, seen("FB-2", "twitter", "@hodl", "deposit_withdrawal", "STILL NOTHING!!", 30)
    )
    third = feed(index, seen("FB-3", "twitter", "@hodl", "deposit_withdrawal", "hello??", 60))
    assert again.duplicate_of == "FB-1"
    assert third.duplicate_of == "FB-1"


def test_same_person_different_problem_is_not_a_duplicate() -> None:
    index = DedupeIndex(SETTINGS)
    feed(index, seen("FB-1", "email", "a@example.net", "kyc", "my passport was rejected"))
    other = feed(
        index, seen("FB-2", "email", "a@example.net", "api", "HTTP 429 on /api/v3/order", 5)
    )
    assert other.duplicate_of is None


def test_a_quoted_uid_links_one_person_across_channels() -> None:
    index = DedupeIndex(SETTINGS)
    feed(
        index,
        seen(
            "FB-1",
            "twitter",
            "@kemal",
            "deposit_withdrawal",
            "AVAX withdrawal pending UID 77120345",
        ),
    )
    mail = feed(
        index,
        seen(
            "FB-2",
            "email",
            "kemal@example.net",
            "deposit_withdrawal",
            "UID 77120345 hesabımdan AVAX çekimi hâlâ beklemede",
            90,
        ),
    )
    assert mail.duplicate_of == "FB-1"


def test_outside_the_window_a_repeat_is_new() -> None:
    index = DedupeIndex(DedupeSettings(duplicate_window_s=3600, incident_window_s=600))
    feed(index, seen("FB-1", "email", "a@example.net", "kyc", "verification pending"))
    assert (
        feed(
            index, seen("FB-2", "email", "a@example.net", "kyc", "still pending", 120)
        ).duplicate_of
        is None
    )


def test_reports_from_different_people_form_one_incident_with_the_first_report() -> None:
    index = DedupeIndex(SETTINGS)
    texts = [
        ("@lena", "twitter", "are USDT TRC20 withdrawals stuck for everyone?"),
        ("@mike", "telegram", "trc20 usdt withdraw stuck on pending?? 800 usdt"),
        (
            "ahmed@example.net",
            "email",
            "My withdrawal of 2,000 USDT on TRON (TRC20) is still processing",
        ),
        ("@xiaoyu", "telegram", "USDT 波场(TRC20)提币一直在审核中，已经三个小时了"),
    ]
    verdicts = [
        feed(index, seen(f"FB-{n}", channel, sender, "deposit_withdrawal", text, n))
        for n, (sender, channel, text) in enumerate(texts)
    ]
    assert verdicts[0].incident is None
    second = verdicts[1].incident
    assert second is not None and second.members == ("FB-0",) and not second.known
    assert all(v.incident is not None and v.incident.known for v in verdicts[2:])
    assert {v.incident.key for v in verdicts[1:] if v.incident} == {second.key}
    assert "TRC20" in second.title


def test_unrelated_reports_about_the_same_coin_stay_apart() -> None:
    index = DedupeIndex(SETTINGS)
    feed(index, seen("FB-1", "twitter", "@a", "deposit_withdrawal", "USDT TRC20 withdrawal stuck"))
    deposit = feed(
        index, seen("FB-2", "twitter", "@b", "deposit_withdrawal", "USDT ERC20 deposit missing", 3)
    )
    question = feed(index, seen("FB-3", "twitter", "@c", "trading", "is USDT a good hedge?", 4))
    assert deposit.incident is None
    assert question.incident is None


def test_app_crash_reports_in_several_languages_form_one_incident() -> None:
    index = DedupeIndex(SETTINGS)
    reports = [
        "android app crashes instantly on open after today's update",
        "Depois da atualização o aplicativo Android fecha sozinho",
        "Güncellemeden sonra Android uygulaması açılır açılmaz kapanıyor",
    ]
    verdicts = [
        feed(index, seen(f"FB-{n}", "telegram", f"@user{n}", "bug_report", text, n))
        for n, text in enumerate(reports)
    ]
    assert verdicts[1].incident is not None
    assert verdicts[2].incident is not None and verdicts[2].incident.known


def test_forgotten_records_are_never_matched() -> None:
    index = DedupeIndex(SETTINGS)
    feed(index, seen("FB-1", "email", "a@example.net", "kyc", "verification pending"))
    index.forget({"FB-1"})
    assert (
        feed(index, seen("FB-2", "email", "a@example.net", "kyc", "pending", 1)).duplicate_of
        is None
    )


def test_social_posts_keep_hashtags_cashtags_mentions_and_links_as_entities() -> None:
    entities = extract_entities(
        "@exchange_support #WithdrawalsDown my $usdt is stuck, see https://t.co/Ab12. "
        "Paid 5$ fee; C# and &#39; are not tags"
    )
    assert entities.handles == ("@exchange_support",)
    assert entities.hashtags == ("#withdrawalsdown",)
    assert entities.cashtags == ("$USDT",)
    assert entities.urls == ("https://t.co/Ab12",)
    assert "USDT" in entities.coins


def test_operator_listed_identities_make_one_person_across_channels() -> None:
    people = {"twitter:@alice_trades": "person:vip", "telegram:77001": "person:vip"}
    index = DedupeIndex(replace(SETTINGS, people=people))
    text = "my SOL deposit is missing"

    def post(reference: str, channel: str, sender: str, minutes: int) -> Seen:
        entities = extract_entities(text)
        persons = persons_of(channel, sender, entities, people=people)
        return Seen(
            reference,
            NOW + timedelta(minutes=minutes),
            persons,
            "deposit_withdrawal",
            entities,
            text,
        )

    feed(index, post("FB-1", "twitter", "@alice_trades", 0))
    assert feed(index, post("FB-2", "telegram", "77001", 5)).duplicate_of == "FB-1"
    assert feed(index, post("FB-3", "telegram", "99999", 6)).duplicate_of is None


def test_a_handle_identifies_a_sender_whose_id_is_a_number() -> None:
    people = {"twitter:@alice_trades": "person:vip"}
    keys = persons_of(
        "twitter", "1234567", extract_entities(""), handle="@Alice_Trades", people=people
    )
    assert keys == {"twitter:1234567", "twitter:@alice_trades", "person:vip"}


def test_a_record_dated_later_than_those_after_it_does_not_keep_them_from_expiring() -> None:
    # A mail without a usable Date is dated when it is fetched: during a backfill of a month,
    # it is a month newer than the mail read after it.
    index = DedupeIndex(DedupeSettings(duplicate_window_s=3600, incident_window_s=60))
    index.add(_seen_at(0, NOW), DedupeResult())
    start = NOW - timedelta(days=30)
    for number in range(1, 2000):
        seen = _seen_at(number, start + timedelta(seconds=30 * number))
        index.check(seen)
        index.add(seen, DedupeResult())
    assert len(index) <= 3600 // 30 + 2  # the window's records and the late-dated one
    assert len(index._by_person) <= 3600 // 30 + 2


def test_forgotten_records_leave_no_empty_entry_behind() -> None:
    index = DedupeIndex(DedupeSettings())
    index.add(_seen_at(1, NOW), DedupeResult())
    index.forget({"FB-0000-0001"})
    assert len(index) == 0
    assert not index._by_person


def _seen_at(number: int, when: datetime) -> Seen:
    return Seen(
        reference=f"FB-0000-{number:04d}",
        received_at=when,
        persons=frozenset({f"email:u{number}@example.net"}),
        category="other",
        entities=extract_entities(""),
        text="a message",
    )
