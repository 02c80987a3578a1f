"""What a policyholder is told when an alert is raised on their readings, in their language.
Pure: the texts and which rule sends which; care/store.py records them and care/stream.py
publishes them on the meter's notices topic (devices/wire/topics.py)."""

from __future__ import annotations

# The notice a new alert of each rule sends; rules not named here reach the care team only.
NOTICE_OF_RULE = {"hypo_level2": "very_low", "hyper_severe": "very_high",
                  "lapsed": "measure_reminder"}

URGENT_NOTICES = ("very_low", "very_high")

TEXTS = {
    "very_low": {
        "en": "Your glucose was very low: eat 15 g of fast sugar (juice, glucose tablets) and "
              "re-check in 15 minutes. Your care team will call you.",
        "zh": "您的血糖过低：请立即摄入15克快速糖（果汁、葡萄糖片），15分钟后复测。"
              "您的医护团队会给您打电话。",
    },
    "very_high": {
        "en": "Your glucose has been very high: drink water, take your medicine as prescribed "
              "and re-check in 2 hours. Your care team will contact you.",
        "zh": "您的血糖持续过高：请多喝水，按医嘱用药，2小时后复测。您的医护团队会联系您。",
    },
    "measure_reminder": {
        "en": "We have not received a reading from you for a few days. Please measure your "
              "glucose today; your coverage depends on regular readings.",
        "zh": "我们已有几天没有收到您的血糖读数。请今天测量血糖；您的保障额度取决于规律测量。",
    },
}


def notice_text(kind: str, language: str) -> str:
    texts = TEXTS[kind]
    return texts.get(language, texts["en"])
