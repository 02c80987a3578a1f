"""Operations: is data flowing, what is refused, which meters need attention."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import db
from dashboard.format import duration

OFFLINE_AFTER_HOURS = 48
LOW_BATTERY_PCT = 20
CLOCK_DRIFT_S = 120
SILENT_SHOWN = 500  # silent meters listed (the count is of all)

# The page's heaviest queries, named for `glucover bench dashboard --explain`.
# Receive -> stored over readings received live in the last five minutes. A reading received
# in the window was stored in it too (stored after received): the ingested_at bound lets the
# index find them instead of a pass over every reading.
LAG_SQL = (
    "select extract(epoch from percentile_cont(0.5) within group (order by "
    "ingested_at - received_at))::float8 from readings "
    "where received_at > now() - interval '5 minutes' "
    "and ingested_at > now() - interval '5 minutes'")
# The meters' last readings within twice the silence, found through ingested_at likewise: one
# index range, not every meter's history; the longest silent first, with the count of all.
SILENT_SQL = (
    "select d.device_id, s.state, s.sent_at as last_status, r.last_reading, "
    "count(*) over () as silent from devices d "
    "left join device_status s using (device_id) "
    "left join (select device_id, max(received_at) as last_reading from readings "
    "           where ingested_at > now() - make_interval(hours => %(h)s * 2) "
    "           and received_at > now() - make_interval(hours => %(h)s * 2) "
    "           group by device_id) r using (device_id) "
    "where d.revoked_at is null "
    "and coalesce(r.last_reading, s.sent_at, d.created_at) < now() - "
    "make_interval(hours => %(h)s) order by coalesce(r.last_reading, s.sent_at, "
    "d.created_at) limit %(shown)s")


@st.cache_data(ttl=10, show_spinner=False)
def _flow(url: str) -> tuple[object, object, object, object]:
    per_minute = db.frame(
        "select date_bin(interval '1 minute', ingested_at, timestamptz '2000-01-01') as minute,"
        " count(*) as readings from readings where ingested_at > now() - interval '1 hour'"
        " group by 1 order by 1")
    # Receive -> stored, over readings received live in the last five minutes (a replayed
    # history's received_at is its gateway's sent_at, long ago: that is history age, not lag).
    lag = db.one(LAG_SQL)
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
def _devices(url: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    offline = db.frame(SILENT_SQL, {"h": OFFLINE_AFTER_HOURS, "shown": SILENT_SHOWN})
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
    silent = int(offline["silent"].iloc[0]) if len(offline) else 0
    st.subheader(f"Meters silent for more than {OFFLINE_AFTER_HOURS} hours: {silent:,}")
    if silent > SILENT_SHOWN:
        st.caption(f"The {SILENT_SHOWN} silent longest.")
    st.dataframe(offline.drop(columns="silent"), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    c1.subheader(f"Battery below {LOW_BATTERY_PCT}%")
    c1.dataframe(low, hide_index=True, width="stretch")
    c2.subheader(f"Clock off by more than {CLOCK_DRIFT_S} s")
    c2.dataframe(drift, hide_index=True, width="stretch")
