"""The validation pack as the PDF a pricing committee reads: two A4 pages, English or Chinese.
Page 1: the question, the answer in figures (Gini of each ruleset on the holdout, the cost of
the change, hypoglycaemia exposure, credibility) and the lift and double lift charts. Page 2:
the ordered Lorenz curves and the cost by product and segment. Pure: a ValidationPack in, PDF
bytes out (matplotlib, no display). Formulas: docs/actuarial.md.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from actuary.lift import rate_order
from actuary.validation import ValidationPack
from glucover.charts import document_fonts

PROPOSED_COLOUR, IN_FORCE_COLOUR, ACTUAL_COLOUR = "#1f77b4", "#ff7f0e", "#333333"
COST_ROWS = 14  # the cost table's rows on page 2 (the largest segments, then the total)

TEXT: dict[str, dict[str, Any]] = {
    "title": {"en": "Ruleset validation pack", "zh": "规则集验证报告"},
    "subtitle": {"en": "Proposed {proposed!r} against {in_force!r} in force · {policies:,} "
                       "policies · holdout {holdout} to {through}",
                 "zh": "拟议规则集 {proposed!r} 对比现行 {in_force!r} · {policies:,} 份保单 · "
                       "保留期 {holdout} 至 {through}"},
    "findings": {"en": "Findings", "zh": "结论"},
    "claims": {"en": "Claims: {train} in training ({train_years:,.0f} policy-years), {hold} in "
                     "the holdout ({hold_years:,.0f})",
               "zh": "理赔：训练期 {train} 件（{train_years:,.0f} 保单年），保留期 {hold} 件"
                     "（{hold_years:,.0f}）"},
    "gini": {"en": "Gini on the holdout: proposed {p:.3f} ({pl:.3f} to {ph:.3f}), in force "
                   "{f:.3f} ({fl:.3f} to {fh:.3f}); 95% bootstrap intervals",
             "zh": "保留期基尼系数：拟议 {p:.3f}（{pl:.3f} 至 {ph:.3f}），现行 {f:.3f}"
                   "（{fl:.3f} 至 {fh:.3f}）；95% 自助法区间"},
    "cost": {"en": "A year out: expected payouts {p:,.0f} proposed, {f:,.0f} in force; cost "
                   "of the change {c:+,.0f}",
             "zh": "一年后：预期赔付 拟议 {p:,.0f}，现行 {f:,.0f}；变更成本 {c:+,.0f}"},
    "sum_insured": {"en": "Projected sum insured: {p:,.0f} proposed, {f:,.0f} in force",
                    "zh": "预计保额：拟议 {p:,.0f}，现行 {f:,.0f}"},
    "hypo": {"en": "Hypoglycaemia (back-test): policy-days with a valid reading below 3.9 "
                   "mmol/L {p:.2f}% proposed, {f:.2f}% in force",
             "zh": "低血糖（回测）：有效读数低于 3.9 mmol/L 的保单日 拟议 {p:.2f}%，现行 "
                   "{f:.2f}%"},
    "credibility": {"en": "Credibility of own claims (Bühlmann–Straub): tau² {tau2:.3g}, s² "
                          "{s2:.3g}, mean Z {z:.3f}",
                    "zh": "自身理赔经验的可信度（Bühlmann–Straub）：tau² {tau2:.3g}，s² "
                          "{s2:.3g}，平均 Z {z:.3f}"},
    "lift": {"en": "Lift: actual and predicted claims per policy-year by equal-exposure decile",
             "zh": "提升图：按等暴露十分位的每保单年实际与预测理赔"},
    "double_lift": {"en": "Double lift: actual / expected of each model, sorted by proposed / "
                          "in force",
                    "zh": "双重提升图：按拟议/现行排序，各模型的实际/预期"},
    "lorenz": {"en": "Ordered Lorenz curves on the holdout",
               "zh": "保留期有序洛伦兹曲线"},
    "by_segment": {"en": "Cost of the change by product and segment (a year out)",
                   "zh": "按产品与细分的变更成本（一年后）"},
    "decile": {"en": "decile (lowest predicted first)", "zh": "十分位（预测最低在前）"},
    "per_year": {"en": "claims per policy-year", "zh": "每保单年理赔"},
    "ae": {"en": "actual / expected", "zh": "实际/预期"},
    "exposure_share": {"en": "share of exposure", "zh": "暴露占比"},
    "claims_share": {"en": "share of claims", "zh": "理赔占比"},
    "actual": {"en": "actual", "zh": "实际"},
    "proposed": {"en": "proposed", "zh": "拟议"},
    "in_force": {"en": "in force", "zh": "现行"},
    "equality": {"en": "no ranking", "zh": "无区分"},
    "columns": {"en": ["product", "segment", "policies", "payout in force", "payout proposed",
                       "cost of change"],
                "zh": ["产品", "细分", "保单", "现行赔付", "拟议赔付", "变更成本"]},
    "sources": {"en": "Method: CAS Monograph 5 (Goldburd et al. 2020), Frees, Meyers & Cummings "
                      "(2011), Bühlmann & Gisler (2005). Formulas: docs/actuarial.md. Generated "
                      "by glucover.",
                "zh": "方法：CAS 专著 5（Goldburd 等 2020）、Frees, Meyers & Cummings (2011)、"
                      "Bühlmann & Gisler (2005)。公式见 docs/actuarial.md。由 glucover 生成。"},
}


def _t(key: str, lang: str, **values: Any) -> Any:
    text = TEXT[key].get(lang) or TEXT[key]["en"]
    return text.format(**values) if values and isinstance(text, str) else text




def findings(pack: ValidationPack, lang: str) -> list[str]:
    """The pack's answer in sentences (page 1; the workbench shows the same)."""
    s = pack.summary()
    b = s["backtest"]
    return [
        _t("claims", lang, train=s["training_claims"], train_years=s["training_exposure_years"],
           hold=s["holdout_claims"], hold_years=s["holdout_exposure_years"]),
        _t("gini", lang, p=s["gini_proposed"], pl=s["gini_proposed_low"],
           ph=s["gini_proposed_high"], f=s["gini_in_force"], fl=s["gini_in_force_low"],
           fh=s["gini_in_force_high"]),
        _t("cost", lang, p=s["expected_payout_proposed"], f=s["expected_payout_in_force"],
           c=s["cost_of_change"]),
        _t("sum_insured", lang, p=s["projected_sum_insured_proposed"],
           f=s["projected_sum_insured_in_force"]),
        _t("hypo", lang, p=b["hypo_days_below_3_9_percent"],
           f=b["hypo_days_below_3_9_percent_baseline"]),
        _t("credibility", lang, tau2=s["credibility_tau2"], s2=s["credibility_s2"],
           z=s["credibility_mean_z"]),
    ]


def lift_chart(ax: Axes, pack: ValidationPack, lang: str) -> None:
    table = pack.lift.lift
    x = table["bin"].to_numpy()
    ax.bar(x, table["actual_per_exposure"], color="#cccccc", label=_t("actual", lang))
    ax.plot(x, table["predicted_per_exposure"], "o-", color=PROPOSED_COLOUR,
            label=_t("proposed", lang))
    ax.set_xticks(x)
    ax.set_xlabel(_t("decile", lang), fontsize=8)
    ax.set_ylabel(_t("per_year", lang), fontsize=8)
    ax.set_title(_t("lift", lang), loc="left", fontsize=10, weight="bold")
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)


def double_lift_chart(ax: Axes, pack: ValidationPack, lang: str) -> None:
    table = pack.lift.double_lift
    if table is None:
        return
    x = table["bin"].to_numpy()
    ax.axhline(1.0, color="#999999", lw=0.8)
    ax.plot(x, table["ae"], "o-", color=PROPOSED_COLOUR, label=_t("proposed", lang))
    ax.plot(x, table["ae_b"], "s--", color=IN_FORCE_COLOUR, label=_t("in_force", lang))
    ax.set_xticks(x)
    ax.set_xlabel(_t("decile", lang), fontsize=8)
    ax.set_ylabel(_t("ae", lang), fontsize=8)
    ax.set_title(_t("double_lift", lang), loc="left", fontsize=10, weight="bold")
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)


def lorenz_points(exposure: np.ndarray, actual: np.ndarray, predicted: np.ndarray  # type: ignore[type-arg]
                  ) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """The ordered Lorenz curve's points from (0,0) (actuary/lift.py's ordering)."""
    order = rate_order(exposure, predicted)
    x = np.concatenate([[0.0], np.cumsum(exposure[order])]) / exposure.sum()
    y = np.concatenate([[0.0], np.cumsum(actual[order])]) / actual.sum()
    return x, y


def lorenz_chart(ax: Axes, pack: ValidationPack, lang: str) -> None:
    p = pack.per_policy
    h = p[(p["holdout_years"] > 0) & p["predicted_proposed"].notna()]
    e, a = h["holdout_years"].to_numpy(float), h["holdout_claims"].to_numpy(float)
    ax.plot([0, 1], [0, 1], color="#999999", lw=0.8, label=_t("equality", lang))
    for name, colour, gini in (("proposed", PROPOSED_COLOUR, pack.lift.gini),
                               ("in_force", IN_FORCE_COLOUR, pack.lift_in_force.gini)):
        x, y = lorenz_points(e, a, h[f"predicted_{name}"].to_numpy(float))
        ax.plot(x, y, color=colour, label=f"{_t(name, lang)} (Gini {gini:.3f})")
    ax.set_xlabel(_t("exposure_share", lang), fontsize=8)
    ax.set_ylabel(_t("claims_share", lang), fontsize=8)
    ax.set_title(_t("lorenz", lang), loc="left", fontsize=10, weight="bold")
    ax.legend(fontsize=7, frameon=False)
    ax.tick_params(labelsize=7)


def cost_rows(pack: ValidationPack) -> pd.DataFrame:
    """The cost table as printed: the largest segments by expected payout, then the total."""
    body = pack.cost.iloc[:-1].sort_values("expected_payout_in_force", ascending=False)
    return pd.concat([body.head(COST_ROWS - 1), pack.cost.iloc[-1:]])


def _cost_table(fig: Figure, pack: ValidationPack, lang: str) -> None:
    fig.text(0.06, 0.47, _t("by_segment", lang), fontsize=10, weight="bold")
    rows = cost_rows(pack)
    cells = [[str(r["product"]), str(r["segment"]), f"{int(r['policies']):,}",
              f"{r['expected_payout_in_force']:,.0f}", f"{r['expected_payout_proposed']:,.0f}",
              f"{r['cost_of_change']:+,.0f}"] for _, r in rows.iterrows()]
    ax = fig.add_axes((0.06, 0.06, 0.88, 0.39))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=_t("columns", lang), loc="upper center",
                     cellLoc="right", colLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.scale(1, 1.25)


def render(pack: ValidationPack, lang: str = "en") -> bytes:
    """The pack as PDF bytes (two A4 portrait pages)."""
    s = pack.summary()
    out = io.BytesIO()
    with document_fonts(), PdfPages(out, metadata={"Title": _t("title", lang),
                                           "Creator": "glucover"}) as pdf:
        page = Figure(figsize=(8.27, 11.69))
        page.text(0.06, 0.965, _t("title", lang), fontsize=16, weight="bold")
        page.text(0.06, 0.945, _t("subtitle", lang, proposed=s["proposed"],
                                  in_force=s["in_force"], policies=s["policies"],
                                  holdout=s["holdout_from"], through=s["through"]), fontsize=8)
        page.text(0.06, 0.915, _t("findings", lang), fontsize=11, weight="bold")
        for i, line in enumerate(findings(pack, lang)):
            page.text(0.07, 0.895 - i * 0.018, "• " + line, fontsize=8)
        lift_chart(page.add_axes((0.1, 0.45, 0.84, 0.28)), pack, lang)
        double_lift_chart(page.add_axes((0.1, 0.08, 0.84, 0.28)), pack, lang)
        page.text(0.06, 0.02, _t("sources", lang), fontsize=6, color="#555555")
        pdf.savefig(page)
        page = Figure(figsize=(8.27, 11.69))
        lorenz_chart(page.add_axes((0.12, 0.56, 0.5, 0.36)), pack, lang)
        _cost_table(page, pack, lang)
        page.text(0.06, 0.02, _t("sources", lang), fontsize=6, color="#555555")
        pdf.savefig(page)
    return out.getvalue()
