"""The severe diabetic complications a claim may be filed for: ICD-10 codes with their names in
English and Chinese and the treatment that makes them severe enough to pay (docs/claims.md gives
the sources). A product covers all of them or a declared subset (policies/product.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnosis:
    code: str
    name_en: str
    name_zh: str
    treatment: str  # what the documents must show was needed (docs/claims.md)

    def name(self, lang: str) -> str:
        return self.name_zh if lang == "zh" else self.name_en


DIAGNOSES = (
    Diagnosis("N18.5", "Chronic kidney disease, stage 5 (diabetic kidney disease)",
              "慢性肾脏病5期（糖尿病肾病）", "dialysis or kidney transplant"),
    Diagnosis("N18.6", "End stage renal disease", "终末期肾病",
              "dialysis or kidney transplant"),
    Diagnosis("E10.35", "Type 1 diabetes mellitus with proliferative diabetic retinopathy",
              "1型糖尿病伴增殖性糖尿病视网膜病变", "laser photocoagulation or vitrectomy"),
    Diagnosis("E11.35", "Type 2 diabetes mellitus with proliferative diabetic retinopathy",
              "2型糖尿病伴增殖性糖尿病视网膜病变", "laser photocoagulation or vitrectomy"),
    Diagnosis("E10.52", "Type 1 diabetes mellitus with diabetic peripheral angiopathy with "
              "gangrene", "1型糖尿病伴糖尿病周围血管病变并坏疽", "amputation"),
    Diagnosis("E11.52", "Type 2 diabetes mellitus with diabetic peripheral angiopathy with "
              "gangrene", "2型糖尿病伴糖尿病周围血管病变并坏疽", "amputation"),
    Diagnosis("E10.621", "Type 1 diabetes mellitus with foot ulcer", "1型糖尿病伴足部溃疡",
              "amputation"),
    Diagnosis("E11.621", "Type 2 diabetes mellitus with foot ulcer", "2型糖尿病伴足部溃疡",
              "amputation"),
    Diagnosis("I21", "Acute myocardial infarction", "急性心肌梗死",
              "hospital admission with coronary intervention or surgery"),
    Diagnosis("I63", "Cerebral infarction", "脑梗死", "hospital admission"),
)
CODES = tuple(d.code for d in DIAGNOSES)
BY_CODE = {d.code: d for d in DIAGNOSES}
