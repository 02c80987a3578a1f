"""The dashboard's text in English and Simplified Chinese: one home for every page's words,
the policyholder's and the staff's (actuaries, the care team, operations) alike: page titles
in the menu, role tags, refusals, figures, tables and charts."""

from __future__ import annotations

LANGUAGES = {"en": "English", "zh": "简体中文"}

TEXT: dict[str, dict[str, str]] = {
    "sign_in": {"en": "Sign in", "zh": "登录"},
    "username": {"en": "Username", "zh": "用户名"},
    "password": {"en": "Password", "zh": "密码"},
    "bad_login": {"en": "Wrong username or password.", "zh": "用户名或密码错误。"},
    "sign_out": {"en": "Sign out", "zh": "退出"},
    # The menu (dashboard/app.py): each page's title, each role's tag, the refusals.
    "page_my_policy": {"en": "My policy", "zh": "我的保单"},
    "page_policies": {"en": "Policies", "zh": "保单"},
    "page_workbench": {"en": "Workbench", "zh": "精算工作台"},
    "page_operations": {"en": "Operations", "zh": "运维"},
    "page_alerts": {"en": "Alerts", "zh": "预警"},
    "page_panel": {"en": "My panel", "zh": "我负责的成员"},
    "page_alert_rules": {"en": "Alert rules", "zh": "预警规则"},
    "role_policyholder": {"en": "policyholder", "zh": "投保人"},
    "role_actuary": {"en": "actuary", "zh": "精算师"},
    "role_operations": {"en": "operations", "zh": "运维"},
    "role_clinician": {"en": "clinician", "zh": "医护人员"},
    "page_refused": {"en": "This page is not open to your role.", "zh": "您的角色无权打开此页面。"},
    "page_not_yours": {"en": "The page you asked for is not open to your role; this is your "
                             "start page.",
                       "zh": "您请求的页面不对您的角色开放，已为您打开首页。"},
    "refused_not_yours": {"en": "you can only see your own policy",
                          "zh": "您只能查看自己的保单"},
    "refused_no_policy": {"en": "choose a policy", "zh": "请选择保单"},
    "refused_not_on_panel": {"en": "this policyholder is not on your panel",
                             "zh": "此成员不在您负责的名单中"},
    "choose_policy": {"en": "Policy", "zh": "保单"},
    "no_panel": {"en": "No policyholders on your panel yet.", "zh": "您负责的名单中还没有成员。"},
    "sum_insured": {"en": "Sum insured", "zh": "保额"},
    "money": {"en": "RMB {amount}", "zh": "{amount} 元"},
    "currency": {"en": "RMB", "zh": "元"},
    "col_sum_insured": {"en": "Sum insured (RMB)", "zh": "保额（元）"},
    "today_change": {"en": "today", "zh": "今日"},
    "week_change": {"en": "This week", "zh": "本周变化"},
    "progress_to_cap": {"en": "Reward earned: RMB {bonus:,.0f} of RMB {cap:,.0f}",
                        "zh": "已获奖励：{bonus:,.0f} 元 / {cap:,.0f} 元"},
    "below_base": {"en": "Bonus RMB {bonus:+,.0f}: your sum insured is below its base of "
                         "RMB {base:,.0f}. Good readings raise it again.",
                   "zh": "奖励 {bonus:+,.0f} 元：当前保额低于基础保额 {base:,.0f} 元。"
                         "血糖达标即可回升。"},
    "col_day": {"en": "Day", "zh": "日期"},
    "col_what": {"en": "What happened", "zh": "说明"},
    "col_change": {"en": "Change (RMB)", "zh": "变动（元）"},
    "ledger_latest": {"en": "The latest {shown} of {total} days.",
                      "zh": "显示最近 {shown} 天，共 {total} 天。"},
    "ledger_all": {"en": "Show all {total} days", "zh": "显示全部 {total} 天"},
    "axis_time": {"en": "Time", "zh": "时间"},
    "axis_meal": {"en": "Meal", "zh": "时段"},
    "task_measure": {"en": "Measure before breakfast today to earn RMB {amount:,.0f}.",
                     "zh": "今天早餐前测一次血糖，可增加 {amount:,.0f} 元保额。"},
    "task_done": {"en": "Done for today: your morning reading was {status}.",
                  "zh": "今日已完成：晨起血糖{status}。"},
    "readings": {"en": "Your readings (mmol/L), target band shaded",
                 "zh": "血糖记录（mmol/L），阴影为目标范围"},
    "ledger": {"en": "How your sum insured changed", "zh": "保额变化明细"},
    "a1c": {"en": "Estimated HbA1c", "zh": "估算糖化血红蛋白"},
    "fhir_download": {"en": "Download my records (FHIR R4, for your doctor)",
                      "zh": "下载我的血糖记录（FHIR R4，可交给医生）"},
    "fhir_help": {"en": "Every reading that counted, in the standard format hospitals and "
                         "doctors' systems read. It carries no name.",
                  "zh": "所有计入的血糖读数，采用医院和医生系统通用的标准格式，不含姓名。"},
    "fhir_cgm_first": {"en": "For a doctor, the consensus figures and the AGP report above come "
                             "first. The FHIR file holds every sensor reading of the days you "
                             "choose (months of them are tens of MB).",
                       "zh": "给医生看时，请先用上方的共识指标和 AGP 报告。FHIR 文件包含所选日期内"
                             "的全部传感器读数（数月的读数可达数十 MB）。"},
    "fhir_days": {"en": "Days in the FHIR file", "zh": "FHIR 文件包含的日期"},
    "fhir_pick_days": {"en": "Pick the last day too.", "zh": "请再选择结束日期。"},
    "tir": {"en": "Time in range", "zh": "达标时间比例"},
    "streak": {"en": "In-target streak", "zh": "连续达标"},
    "days": {"en": "days", "zh": "天"},
    "day": {"en": "day", "zh": "天"},
    "claim_today": {"en": "A claim today would pay", "zh": "今日理赔可得"},
    "no_ledger": {"en": "Your first day is being priced; come back tomorrow.",
                  "zh": "保额计算中，请明天再来查看。"},
    "in_target": {"en": "in target", "zh": "达标"},
    "high": {"en": "too high", "zh": "偏高"},
    "out_of_target": {"en": "outside the target", "zh": "未达标"},
    "missed": {"en": "missed", "zh": "未测量"},
    "explain_reading": {"en": "{time} {meal} reading {value:.1f} mmol/L: {status}",
                        "zh": "{time} {meal}血糖 {value:.1f} mmol/L：{status}"},
    "explain_missed": {"en": "no pre-meal reading", "zh": "没有餐前血糖记录"},
    "explain_week": {"en": "; the week had fewer than {n} measured days",
                     "zh": "；本周测量少于 {n} 天"},
    "fasting": {"en": "fasting", "zh": "空腹"},
    "preprandial": {"en": "pre-meal", "zh": "餐前"},
    "postprandial": {"en": "after a meal", "zh": "餐后"},
    "casual": {"en": "any time", "zh": "随机"},
    "bedtime": {"en": "bedtime", "zh": "睡前"},
    "unknown": {"en": "not said", "zh": "未注明"},
    "insufficient": {"en": "sensor not worn enough", "zh": "佩戴时间不足"},
    "hypo_risk": {"en": "low glucose: no reward today", "zh": "出现低血糖，今日不奖励"},
    "explain_cgm": {"en": "time in range {tir:.0f}%, below 54 {below:.1f}%, sensor worn "
                          "{coverage:.0f}% of the day: {status}",
                    "zh": "达标时间 {tir:.0f}%，低于 54 mg/dL {below:.1f}%，传感器佩戴 "
                          "{coverage:.0f}%：{status}"},
    "explain_no_sensor": {"en": "no sensor readings", "zh": "没有传感器读数"},
    "task_wear": {"en": "Keep your sensor on: a day with at least {tir:.0f}% of its time in "
                        "range earns RMB {amount:,.0f}.",
                  "zh": "请坚持佩戴传感器：当日至少 {tir:.0f}% 时间血糖在目标范围内，"
                        "保额增加 {amount:,.0f} 元。"},
    "today_so_far": {"en": "Today so far: time in range {tir:.0f}%, sensor worn {coverage:.0f}% "
                           "of the day.",
                     "zh": "今日目前：达标时间 {tir:.0f}%，传感器已佩戴 {coverage:.0f}%。"},
    "gmi": {"en": "GMI (estimated HbA1c)", "zh": "GMI（估算糖化血红蛋白）"},
    "cgm_today": {"en": "Today, target range shaded", "zh": "今日血糖，阴影为目标范围"},
    "agp": {"en": "Ambulatory glucose profile, last 14 days", "zh": "动态血糖图谱（近 14 天）"},
    "agp_caption": {"en": "Line: median. Dark band: 25-75%. Light band: 5-95%. Lines at "
                          "{low} and {high} {unit}: the target range.",
                    "zh": "实线：中位数；深色带：25-75%；浅色带：5-95%；{low} 与 {high} {unit}"
                          "：目标范围。"},
    "tir_bands": {"en": "Time in ranges ({unit}), last 14 days",
                  "zh": "各血糖范围时间占比（{unit}，近 14 天）"},
    "daily_profiles": {"en": "Daily profiles, last 14 days", "zh": "每日血糖曲线（近 14 天）"},
    "band_very_low": {"en": "Very low", "zh": "极低"},
    "band_low": {"en": "Low", "zh": "低"},
    "band_in_range": {"en": "In range", "zh": "目标范围"},
    "band_high": {"en": "High", "zh": "高"},
    "band_very_high": {"en": "Very high", "zh": "极高"},
    "metrics_title": {"en": "Your CGM figures against the consensus targets",
                      "zh": "CGM 指标与国际共识目标"},
    "col_metric": {"en": "Figure", "zh": "指标"},
    "col_value": {"en": "Yours", "zh": "您的数值"},
    "col_target": {"en": "Target", "zh": "目标"},
    "met": {"en": "met", "zh": "达到"},
    "not_met": {"en": "not met", "zh": "未达到"},
    "m_tir_70_180": {"en": "Time in range", "zh": "目标范围内时间"},
    "m_tbr_below_70": {"en": "Time below range", "zh": "低于目标范围时间"},
    "m_tbr_below_54": {"en": "Time very low", "zh": "极低时间"},
    "m_tar_above_180": {"en": "Time above range", "zh": "高于目标范围时间"},
    "m_tar_above_250": {"en": "Time very high", "zh": "极高时间"},
    "m_cv": {"en": "Glucose variability (CV)", "zh": "血糖变异系数（CV）"},
    "m_active_percent": {"en": "Sensor active", "zh": "传感器有效佩戴"},
    "m_mean": {"en": "Mean glucose", "zh": "平均血糖"},
    "m_gmi": {"en": "GMI", "zh": "GMI"},
    "unit_label": {"en": "Glucose unit", "zh": "血糖单位"},
    "agp_download": {"en": "Download the AGP report (PDF, for your doctor)",
                     "zh": "下载 AGP 报告（PDF，可交给医生）"},
    "no_cgm_data": {"en": "No sensor readings in the last 14 days yet.",
                    "zh": "近 14 天还没有传感器读数。"},
    # The care team's alert queue (dashboard/views/care.py).
    "alerts_title": {"en": "Alerts", "zh": "预警"},
    "alerts_none": {"en": "No open alerts on your panel.", "zh": "您负责的成员暂无待处理预警。"},
    "alerts_show_resolved": {"en": "Show resolved", "zh": "显示已解决"},
    "alert_pick": {"en": "Alert", "zh": "预警"},
    "alert_readings": {"en": "Readings that raised it", "zh": "触发预警的读数"},
    "alert_trail": {"en": "What the care team did", "zh": "处理记录"},
    "alert_open_policy": {"en": "Open readings, ledger and AGP", "zh": "查看读数、保额明细和 AGP"},
    "alert_assign": {"en": "Assign to me", "zh": "分配给我"},
    "alert_acknowledge": {"en": "Acknowledge", "zh": "确认"},
    "alert_note": {"en": "Note", "zh": "备注"},
    "alert_add_note": {"en": "Add note", "zh": "添加备注"},
    "alert_outcome": {"en": "Outcome", "zh": "处理结果"},
    "alert_resolve": {"en": "Resolve", "zh": "解决"},
    "alert_done": {"en": "Saved.", "zh": "已保存。"},
    "action_refused_unknown_action": {"en": "That action does not exist.", "zh": "没有这个操作。"},
    "action_refused_not_on_panel": {"en": "This alert is not on your panel.",
                                    "zh": "此预警不在您负责的名单中。"},
    "action_refused_resolved": {"en": "The alert is resolved already.", "zh": "此预警已解决。"},
    "action_refused_empty_note": {"en": "A note needs text.", "zh": "备注不能为空。"},
    "action_refused_no_outcome": {"en": "Choose an outcome to resolve the alert.",
                                  "zh": "请选择处理结果后再解决。"},
    "col_severity": {"en": "Severity", "zh": "严重程度"},
    "col_last_reading": {"en": "Last reading", "zh": "最近读数"},
    "age_minutes": {"en": "{n} min", "zh": "{n} 分钟"},
    "age_hours": {"en": "{n} h", "zh": "{n} 小时"},
    "age_days": {"en": "{n} d", "zh": "{n} 天"},
    "alert_summary": {"en": "{n} readings, {low:.1f} to {high:.1f} mmol/L",
                      "zh": "共 {n} 个读数，{low:.1f}–{high:.1f} mmol/L"},
    "col_age": {"en": "Age", "zh": "时长"},
    "col_policy": {"en": "Policyholder", "zh": "成员"},
    "col_rule": {"en": "Alert", "zh": "预警"},
    "col_readings": {"en": "Readings", "zh": "读数"},
    "col_status": {"en": "Status", "zh": "状态"},
    "col_assigned": {"en": "Assigned to", "zh": "负责人"},
    "col_time": {"en": "Time", "zh": "时间"},
    "col_who": {"en": "Who", "zh": "人员"},
    "col_action": {"en": "Action", "zh": "操作"},
    "rule_hypo_level2": {"en": "Very low glucose", "zh": "严重低血糖"},
    "rule_hypo_level1_repeated": {"en": "Repeated low glucose", "zh": "反复低血糖"},
    "rule_hyper_severe": {"en": "Very high glucose", "zh": "严重高血糖"},
    "rule_rising": {"en": "Rising weekly mean", "zh": "周均血糖上升"},
    "rule_lapsed": {"en": "Stopped measuring", "zh": "停止测量"},
    "rule_device_trouble": {"en": "Meter trouble", "zh": "设备故障"},
    "severity_urgent": {"en": "urgent", "zh": "紧急"},
    "severity_high": {"en": "high", "zh": "高"},
    "severity_medium": {"en": "medium", "zh": "中"},
    "severity_low": {"en": "low", "zh": "低"},
    "status_open": {"en": "open", "zh": "待处理"},
    "status_acknowledged": {"en": "acknowledged", "zh": "已确认"},
    "status_resolved": {"en": "resolved", "zh": "已解决"},
    "outcome_called": {"en": "called", "zh": "已致电"},
    "outcome_advised": {"en": "advised", "zh": "已给建议"},
    "outcome_referred": {"en": "referred", "zh": "已转诊"},
    "outcome_no_action": {"en": "no action", "zh": "无需处理"},
    "action_assign": {"en": "assigned", "zh": "分配"},
    "action_acknowledge": {"en": "acknowledged", "zh": "确认"},
    "action_note": {"en": "note", "zh": "备注"},
    "action_resolve": {"en": "resolved", "zh": "解决"},
    "notices_title": {"en": "Messages from your care team", "zh": "医护团队消息"},
    "rules_title": {"en": "Alert rules", "zh": "预警规则"},
    "rules_version": {"en": "Version in force: {version}", "zh": "当前版本：{version}"},
    "rules_section": {"en": "Rule", "zh": "规则"},
    "rules_parameter": {"en": "Parameter", "zh": "参数"},
    "rules_value": {"en": "Value", "zh": "取值"},
    "rules_lead_only": {"en": "The care team lead publishes changes to the rules.",
                        "zh": "规则修改由医护团队负责人发布。"},
    "rules_notes": {"en": "Why this change", "zh": "修改原因"},
    "rules_publish": {"en": "Publish new version", "zh": "发布新版本"},
    "rules_unchanged": {"en": "Nothing changed.", "zh": "没有修改。"},
    "rules_published": {"en": "Published version {version}; the alert service uses it within a "
                              "minute.",
                        "zh": "已发布第 {version} 版，预警服务将在一分钟内启用。"},
    # The operations page (dashboard/views/operations.py).
    "ops_last_hour": {"en": "Readings, last hour", "zh": "近一小时读数"},
    "ops_lag": {"en": "Ingest lag", "zh": "接收延迟"},
    "ops_lag_help": {"en": "receive → stored, the median over readings received in the last 5 "
                           "minutes",
                     "zh": "接收 → 入库，近 5 分钟内接收的读数的中位数"},
    "ops_age": {"en": "Reading age", "zh": "读数时效"},
    "ops_age_help": {"en": "measured → stored, the median over readings stored in the last 5 "
                           "minutes; back-filled history is old when it arrives",
                     "zh": "测量 → 入库，近 5 分钟内入库的读数的中位数；"
                           "补传的历史读数到达时已较旧"},
    "ops_since_last": {"en": "Since the last reading", "zh": "距上一条读数"},
    "ops_per_minute": {"en": "Readings per minute", "zh": "每分钟读数"},
    "ops_state_online": {"en": "online", "zh": "在线"},
    "ops_state_offline": {"en": "offline", "zh": "离线"},
    "ops_none": {"en": "None.", "zh": "无。"},
    "ops_minute": {"en": "Minute", "zh": "分钟"},
    "ops_readings": {"en": "Readings", "zh": "读数"},
    "ops_rejected": {"en": "Rejected in the last 24 hours, by reason",
                     "zh": "近 24 小时拒收消息（按原因）"},
    "ops_samples": {"en": "Latest sample of each reason", "zh": "每种原因的最新样本"},
    "ops_silent": {"en": "Meters silent for more than {hours} hours: {n:,}",
                   "zh": "超过 {hours} 小时无消息的设备：{n:,} 台"},
    "ops_silent_shown": {"en": "The {n} silent longest.", "zh": "列出无消息最久的 {n} 台。"},
    "ops_battery": {"en": "Battery below {pct}%", "zh": "电量低于 {pct}%"},
    "ops_clock": {"en": "Clock off by more than {s} s", "zh": "时钟偏差超过 {s} 秒"},
    "ops_col_reason": {"en": "reason", "zh": "原因"},
    "ops_col_messages": {"en": "messages", "zh": "消息数"},
    "ops_col_latest": {"en": "latest", "zh": "最近一次"},
    "ops_col_received_at": {"en": "received at", "zh": "接收时间"},
    "ops_col_topic": {"en": "topic", "zh": "主题"},
    "ops_col_detail": {"en": "detail", "zh": "详情"},
    "ops_col_payload_start": {"en": "payload start", "zh": "消息开头"},
    "ops_col_device_id": {"en": "device", "zh": "设备"},
    "ops_col_state": {"en": "state", "zh": "状态"},
    "ops_col_last_status": {"en": "last status", "zh": "最近状态"},
    "ops_col_last_reading": {"en": "last reading", "zh": "最近读数"},
    "ops_col_battery_pct": {"en": "battery %", "zh": "电量 %"},
    "ops_col_sent_at": {"en": "sent at", "zh": "发送时间"},
    "ops_col_clock_offset_s": {"en": "clock offset (s)", "zh": "时钟偏差（秒）"},
    # The workbench's figures (dashboard/views/actuary.py render).
    "wb_title": {"en": "Actuary workbench", "zh": "精算工作台"},
    "wb_policies": {"en": "Policies", "zh": "保单数"},
    "wb_total": {"en": "Total sum insured", "zh": "总保额"},
    "wb_mean_bonus": {"en": "Mean bonus", "zh": "平均奖励"},
    "wb_in_target": {"en": "In target on the last priced day", "zh": "最近定价日达标比例"},
    "wb_meters_tir": {"en": "Meters: time in range ({low}–{high} mmol/L), last {days} days of "
                            "readings: {tir}",
                      "zh": "血糖仪：目标范围内读数比例（{low}–{high} mmol/L），近 {days} 天读数："
                            "{tir}"},
    "wb_no_data": {"en": "no data yet", "zh": "暂无数据"},
    "wb_no_cgm": {"en": "CGMs: no CGM policies priced yet", "zh": "CGM：尚无已定价的 CGM 保单"},
    "wb_cgm": {"en": "CGM portfolio ({n} policies), last {days} days: time in range 70–180 "
                     "mg/dL {tir}, below 54 mg/dL {below}, sensor coverage on days worn "
                     "{coverage}",
               "zh": "CGM 组合（{n} 份保单），近 {days} 天：70–180 mg/dL 范围内时间 {tir}，"
                     "低于 54 mg/dL {below}，佩戴日传感器覆盖率 {coverage}"},
    "wb_tab_ruleset": {"en": "Ruleset", "zh": "规则集"},
    "wb_tab_backtest": {"en": "Back-test", "zh": "回测"},
    "wb_tab_glm": {"en": "GLM", "zh": "GLM"},
    "wb_tab_gaming": {"en": "Gaming", "zh": "博弈检测"},
    # The same page as the care team and actuaries see it: about the policyholder, not to them.
    "readings_staff": {"en": "Readings (mmol/L), target band shaded",
                       "zh": "血糖记录（mmol/L），阴影为目标范围"},
    "ledger_staff": {"en": "How the sum insured changed", "zh": "保额变化明细"},
    "below_base_staff": {"en": "Bonus RMB {bonus:+,.0f}: the sum insured is below its base of "
                               "RMB {base:,.0f}.",
                         "zh": "奖励 {bonus:+,.0f} 元：当前保额低于基础保额 {base:,.0f} 元。"},
    "fhir_download_staff": {"en": "Download the records (FHIR R4)",
                            "zh": "下载血糖记录（FHIR R4）"},
    "metrics_title_staff": {"en": "CGM figures against the consensus targets",
                            "zh": "CGM 指标与国际共识目标"},
    "agp_download_staff": {"en": "Download the AGP report (PDF)", "zh": "下载 AGP 报告（PDF）"},
    "notices_title_staff": {"en": "Notices sent to the policyholder",
                            "zh": "已发送给成员的消息"},
}


def voiced(key: str, staff: bool) -> str:
    """The text key for a reader: the policyholder is addressed as "you"; staff (the care
    team, actuaries) read about the policyholder, where the text has a staff form."""
    return f"{key}_staff" if staff and f"{key}_staff" in TEXT else key


def initial_language(query: str | None, accept_language: str | None) -> str:
    """The language to start in: `?lang=` when it names one we have, else the browser's first
    preference we have (Accept-Language, by its q weights), else English."""
    if query in LANGUAGES:
        return query
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0  # unreadable: not counted
        if weight > 0:  # q=0: not acceptable
            ranked.append((-weight, i, tag.strip().lower().split("-")[0]))
    for _, _, code in sorted(ranked):
        if code in LANGUAGES:
            return code
    return "en"


def t(key: str, lang: str, **values: object) -> str:
    text = TEXT[key].get(lang) or TEXT[key]["en"]
    return text.format(**values) if values else text
