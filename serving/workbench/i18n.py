"""The workbench's words in Chinese (the default) and English.

Every label a page shows is a key here; a key missing in one language is a bug
that tests/test_workbench_web.py finds.
"""

from __future__ import annotations

LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"

TEXT: dict[str, dict[str, str]] = {
    "title": {"zh": "防返贫监测工作台", "en": "Relapse-risk workbench"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "sign_out": {"zh": "退出", "en": "Sign out"},
    "username": {"zh": "用户名", "en": "User name"},
    "password": {"zh": "密码", "en": "Password"},
    "sign_in_failed": {
        "zh": "用户名或密码错误，或账号已被暂时锁定",
        "en": "Wrong user name or password, or the account is locked for now",
    },
    "visit_list": {"zh": "走访名单", "en": "Visit list"},
    "county": {"zh": "全县情况", "en": "County"},
    "township": {"zh": "乡镇", "en": "Township"},
    "village": {"zh": "村", "en": "Village"},
    "band": {"zh": "风险等级", "en": "Risk band"},
    "reason": {"zh": "原因", "en": "Reason"},
    "all": {"zh": "全部", "en": "All"},
    "filter": {"zh": "筛选", "en": "Filter"},
    "rank": {"zh": "排名", "en": "Rank"},
    "household": {"zh": "农户", "en": "Household"},
    "reasons": {"zh": "风险原因", "en": "Reasons"},
    "measures": {"zh": "建议措施", "en": "Suggested measures"},
    "status": {"zh": "走访状态", "en": "Visit status"},
    "status_visited": {"zh": "已走访", "en": "Visited"},
    "status_tried": {"zh": "未遇到，需再访", "en": "Not met, visit again"},
    "status_overdue": {"zh": "超期未访", "en": "Overdue"},
    "status_open": {"zh": "待走访", "en": "To visit"},
    "list_as_of": {"zh": "名单数据截至", "en": "List as of"},
    "listed_on": {"zh": "下发日期", "en": "Issued on"},
    "no_households": {"zh": "没有符合条件的农户", "en": "No household matches"},
    "income_by_source": {"zh": "分来源月收入（元）", "en": "Monthly income by source (yuan)"},
    "per_capita_vs_line": {
        "zh": "人均年收入与监测线（元/人/年）",
        "en": "Per-capita yearly income against the monitoring line (yuan per person per year)",
    },
    "per_capita": {"zh": "人均收入", "en": "Per-capita income"},
    "per_capita_after_rigid": {"zh": "扣除刚性支出后", "en": "After rigid spending"},
    "monitoring_line": {"zh": "监测线", "en": "Monitoring line"},
    "not_reported": {"zh": "未报", "en": "not reported"},
    "members": {"zh": "家庭成员", "en": "Members"},
    "age": {"zh": "年龄", "en": "Age"},
    "relation": {"zh": "关系", "en": "Relation"},
    "disability": {"zh": "残疾等级", "en": "Disability grade"},
    "chronic": {"zh": "慢性病", "en": "Chronic illness"},
    "labor": {"zh": "劳动能力", "en": "Labour capacity"},
    "work_months": {"zh": "近12个月务工月数", "en": "Months worked, last 12"},
    "events": {"zh": "近期事件", "en": "Events"},
    "loans": {"zh": "贷款", "en": "Loans"},
    "assistance": {"zh": "帮扶措施", "en": "Assistance"},
    "date": {"zh": "日期", "en": "Date"},
    "kind": {"zh": "类型", "en": "Kind"},
    "severity": {"zh": "程度", "en": "Severity"},
    "principal": {"zh": "本金", "en": "Principal"},
    "balance": {"zh": "余额", "en": "Balance"},
    "overdue_days": {"zh": "逾期天数", "en": "Days overdue"},
    "issued": {"zh": "发放", "en": "Issued"},
    "start": {"zh": "开始", "en": "Start"},
    "end": {"zh": "结束", "en": "End"},
    "monthly_amount": {"zh": "月金额", "en": "Monthly amount"},
    "yes": {"zh": "是", "en": "yes"},
    "no": {"zh": "否", "en": "no"},
    "none": {"zh": "无", "en": "none"},
    "visits": {"zh": "走访记录", "en": "Visits"},
    "record_visit": {"zh": "登记走访结果", "en": "Record a visit"},
    "edit": {"zh": "修改", "en": "Edit"},
    "history": {"zh": "修改记录", "en": "History"},
    "visit_date": {"zh": "走访日期", "en": "Visit date"},
    "visitor": {"zh": "走访人", "en": "Visitor"},
    "outcome": {"zh": "走访结果", "en": "Outcome"},
    "outcome_confirmed": {"zh": "确有风险，建议纳入监测", "en": "Risk confirmed, proposed for monitoring"},
    "outcome_no_risk": {"zh": "未发现风险", "en": "No risk found"},
    "outcome_not_home": {"zh": "不在家", "en": "Not at home"},
    "outcome_moved_away": {"zh": "已迁出", "en": "Moved away"},
    "measures_agreed": {"zh": "商定的帮扶措施", "en": "Measures agreed"},
    "note": {"zh": "备注", "en": "Note"},
    "save": {"zh": "保存", "en": "Save"},
    "saved": {"zh": "已保存", "en": "Saved"},
    "version": {"zh": "版本", "en": "Version"},
    "changed_by": {"zh": "修改人", "en": "Changed by"},
    "changed_at": {"zh": "修改时间", "en": "Changed at"},
    "conflict": {
        "zh": "该记录已被他人修改，下面是最新内容；请核对后重新保存",
        "en": "Someone else changed this record; its latest values are below. Check them and save again",
    },
    "invalid": {"zh": "请更正以下内容", "en": "Please correct"},
    "coverage": {"zh": "走访覆盖率", "en": "Coverage"},
    "confirmation": {"zh": "风险确认率", "en": "Confirmed"},
    "listed": {"zh": "名单户数", "en": "Listed"},
    "visited": {"zh": "已走访", "en": "Visited"},
    "confirmed": {"zh": "确认有风险", "en": "Confirmed"},
    "overdue": {"zh": "超期未访", "en": "Overdue"},
    "overdue_list": {
        "zh": "超期未访农户（名单下发超过15天仍未走访）",
        "en": "Overdue households (listed more than 15 days ago, not visited)",
    },
    "by_township": {"zh": "按乡镇", "en": "By township"},
    "by_first_reason": {"zh": "按首要原因", "en": "By first reason"},
    "total": {"zh": "合计", "en": "Total"},
    "earlier_lists": {"zh": "往期名单", "en": "Earlier lists"},
    "not_found": {"zh": "未找到", "en": "Not found"},
    "forbidden": {
        "zh": "请求无效，请刷新页面后重试",
        "en": "The form expired; reload the page and try again",
    },
    "back": {"zh": "返回", "en": "Back"},
    "language_other": {"zh": "English", "en": "中文"},
    "score_note": {
        "zh": "风险分只用于安排走访先后，不作为任何帮扶资格的认定依据",
        "en": "The score only orders home visits; it never decides eligibility for support",
    },
    "band_high": {"zh": "高", "en": "high"},
    "band_medium": {"zh": "中", "en": "medium"},
    "band_low": {"zh": "低", "en": "low"},
}

FAMILY: dict[str, dict[str, str]] = {
    "income": {"zh": "收入偏低或下降", "en": "low or falling income"},
    "employment": {"zh": "务工就业减少", "en": "less work"},
    "agriculture": {"zh": "种养殖减收", "en": "farm income down"},
    "business": {"zh": "经营亏损", "en": "business losses"},
    "health": {"zh": "疾病和医疗负担", "en": "illness and medical costs"},
    "disability": {"zh": "残疾", "en": "disability"},
    "education": {"zh": "教育支出", "en": "education costs"},
    "loans": {"zh": "贷款还款压力", "en": "loan repayments"},
    "shocks": {"zh": "灾害事故等突发事件", "en": "disasters and accidents"},
    "household": {"zh": "家庭人口负担", "en": "many dependants"},
    "assistance": {"zh": "帮扶措施变化", "en": "assistance changed"},
    "reporting": {"zh": "收入信息缺报", "en": "income not reported"},
    "location": {"zh": "所在村风险较高", "en": "village at higher risk"},
    "other": {"zh": "其他", "en": "other"},
    "": {"zh": "无", "en": "none"},
}
"""Driver families of reasons (``ReasonTemplate.family``): the visit list's filter, the county table."""


def text(key: str, language: str) -> str:
    return TEXT[key][language]


def family(name: str, language: str) -> str:
    return FAMILY.get(name, {"zh": name, "en": name})[language]


VALUES: dict[str, dict[str, str]] = {
    # income sources (features/contract.py INCOME_SOURCES)
    "wage_local": {"zh": "本地务工", "en": "local wages"},
    "wage_migrant": {"zh": "外出务工", "en": "migrant wages"},
    "agriculture": {"zh": "种养殖", "en": "farming"},
    "business": {"zh": "经营", "en": "business"},
    "property": {"zh": "财产性收入", "en": "property"},
    "transfer_dibao": {"zh": "低保", "en": "dibao"},
    "transfer_pension": {"zh": "养老金", "en": "pension"},
    "transfer_subsidy": {"zh": "补贴", "en": "subsidies"},
    "transfer_other": {"zh": "其他转移", "en": "other transfers"},
    # relations
    "head": {"zh": "户主", "en": "head"},
    "spouse": {"zh": "配偶", "en": "spouse"},
    "child": {"zh": "子女", "en": "child"},
    "parent": {"zh": "父母", "en": "parent"},
    "grandchild": {"zh": "孙辈", "en": "grandchild"},
    "sibling": {"zh": "兄弟姐妹", "en": "sibling"},
    "other": {"zh": "其他", "en": "other"},
    # labour capacity
    "full": {"zh": "有劳动能力", "en": "full"},
    "weak": {"zh": "弱劳动能力", "en": "weak"},
    "none": {"zh": "无劳动能力", "en": "none"},
    # loan kinds
    "poverty_microcredit": {"zh": "小额信贷", "en": "poverty microcredit"},
    "bank": {"zh": "银行贷款", "en": "bank"},
    "informal": {"zh": "民间借贷", "en": "informal"},
}
"""Contract values shown on the household page; a value not here is shown as it is (events, assistance)."""


def value(code: str | None, language: str) -> str:
    if code is None:
        return ""
    return VALUES.get(code, {}).get(language, code)
