"""Operations: is data flowing, what is refused, which meters need attention."""

from __future__ import annotations

import streamlit as st

from dashboard import db
from dashboard.format import duration

OFFLINE_AFTER_HOURS = 48
LOW_BATTERY_PCT = 20
CLOCK_DRIFT_S = 120


@st.cache_data(ttl=10, show_spinner=False)
def _flow(url: str) -> tuple[object, object, object, object]:
    per_minute = db.frame(
        "select date_bin(interval '1 minute', ingested_at, timestamptz '2000-01-01') as minute,"
        " count(*) as readings from readings where ingested_at > now() - interval '1 hour'"
        " group by 1 order by 1")
    # Receive -> stored, over readings received live in the last five minutes (a replayed
    # history's received_at is its gateway's sent_at, long ago: that is history age, not lag).
    lag = db.one("select extract(epoch from percentile_cont(0.5) within group (order by "
                 "ingested_at - received_at))::float8 from readings "
                 "where received_at > now() - interval '5 minutes'")
    age = db.one("select extract(epoch from percentile_cont(0.5) within group (order by "
                 "ingested_at - measured_at))::float8 from readings "
                 "where ingested_at > now() - interval '5 minutes'")
    last = db.one("select extract(epoch from now() - max(ingested_at))::float8 from readings")
    return per_minute, lag, age, last


@st.cache_data(ttl=30, show_spinner=False)
def _rejects(url: str) -> tuple[object, object]:
    by_reason = db.frame("select reason, count(*) as messages, max(received_at) as latest "
                         "from rejected_messages where received_at > now() - interval '1 day' "
                         "group by reason order by messages desc")
    samples = db.frame(
        "select distinct on (reason) reason, received_at, topic, detail, "
        # escape: any bytes (invalid UTF-8 included) shown safely
        "encode(substring(payload from 1 for 200), 'escape') as payload_start "
        "from rejected_messages order by reason, received_at desc")
    return by_reason, samples


@st.cache_data(ttl=30, show_spinner=False)
def _devices(url: str) -> tuple[object, object, object]:
    offline = db.frame(
        "select d.device_id, s.state, s.sent_at as last_status, max(r.received_at) as "
        "last_reading from devices d left join device_status s using (device_id) "
        "left join readings r on r.device_id = d.device_id "
        "and r.received_at > now() - make_interval(hours => %s * 2) "
        "where d.revoked_at is null group by d.device_id, s.state, s.sent_at "
        "having coalesce(max(r.received_at), s.sent_at, d.created_at) < now() - "
        "make_interval(hours => %s) order by 1", (OFFLINE_AFTER_HOURS, OFFLINE_AFTER_HOURS))
    low = db.frame("select device_id, battery_pct, sent_at from device_status "
                   "where battery_pct < %s order by battery_pct", (LOW_BATTERY_PCT,))
    drift = db.frame("select device_id, clock_offset_s, sent_at from device_status "
                     "where abs(clock_offset_s) > %s order by abs(clock_offset_s) desc",
                     (CLOCK_DRIFT_S,))
    return offline, low, drift


def render() -> None:
    url = db.database_url()
    st.title("Operations")
    per_minute, lag, age, last = _flow(url)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Readings, last hour", f"{int(per_minute['readings'].sum()):,}")  # type: ignore[index]
    c2.metric("Ingest lag", duration(lag),  # type: ignore[arg-type]
              help="receive → stored, the median over readings received in the last 5 "
                   "minutes")
    c3.metric("Reading age", duration(age),  # type: ignore[arg-type]
              help="measured → stored, the median over readings stored in the last 5 minutes; "
                   "back-filled history is old when it arrives")
    c4.metric("Since the last reading", duration(last))  # type: ignore[arg-type]
    st.subheader("Readings per minute")
    st.line_chart(per_minute, x="minute", y="readings")
    by_reason, samples = _rejects(url)
    st.subheader("Rejected in the last 24 hours, by reason")
    st.dataframe(by_reason, hide_index=True, width="stretch")
    with st.expander("Latest sample of each reason"):
        st.dataframe(samples, hide_index=True, width="stretch")
    offline, low, drift = _devices(url)
    st.subheader(f"Meters silent for more than {OFFLINE_AFTER_HOURS} hours")
    st.dataframe(offline, hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.subheader(f"Battery below {LOW_BATTERY_PCT}%")
    c1.dataframe(low, hide_index=True, width="stretch")
    c2.subheader(f"Clock off by more than {CLOCK_DRIFT_S} s")
    c2.dataframe(drift, hide_index=True, width="stretch")
