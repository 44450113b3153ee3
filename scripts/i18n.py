#!/usr/bin/env python3
"""Refresh the console's Simplified Chinese catalogue: extract every visible string
(babel.cfg), keep the translations below, and write accessd/web/locale/zh_CN's
messages.po. A string with no translation here stays English (and is listed).

  .venv/bin/python scripts/i18n.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "accessd/web/locale/zh_CN/LC_MESSAGES/messages.po"

ZH = {
    "You may not do this.": "您无权执行此操作。",
    "This form has expired: reload the page and try again.": "此表单已过期：请刷新页面后重试。",
    "Open alarms": "未处理的警报", "When": "时间", "Door": "门", "Alarm": "警报",
    "What happened": "发生了什么", "note": "备注", "Acknowledge": "确认",
    "No open alarms.": "没有未处理的警报。", "Doors": "门禁", "whitelist v%(v)s published":
    "已发布白名单 v%(v)s", "Link": "连接", "Last seen": "最后联系", "Mode": "模式",
    "Whitelist": "白名单", "Software": "软件版本", "told to run": "应运行", "Granted today": "今日放行", "Denied today": "今日拒绝",
    "behind": "未更新", "No doors yet.": "还没有门。", "%(n)s of %(all)s people":
    "%(n)s / %(all)s 人", "Unit": "单元", "Name": "姓名", "Role": "身份",
    "No one matches.": "没有匹配的人。", "applied by %(n)s of %(m)s doors":
    "%(m)s 扇门中已有 %(n)s 扇应用", "Not yet:": "尚未：",
    "Without the live channel the doors fetch it at their next poll and report it with their "
    "nightly upload.": "没有实时通道时，各门在下次轮询时获取，并在夜间上传时报告。",
    "Audit": "审计", "Audit trail": "审计记录", "Verify the chain": "校验哈希链",
    "The chain is intact.": "哈希链完整。", "The chain is broken:": "哈希链已断开：",
    "%(lines)s lines, %(anchors)s signed anchors.": "共 %(lines)s 条记录，%(anchors)s 个签名锚点。", "Who": "谁", "What": "什么", "Detail": "详情",
    "Office": "物业办公室", "Dashboard": "仪表板", "People": "人员", "Passes": "通行证",
    "Logs": "日志", "Publish": "发布", "Staff": "员工", "Resident": "住户", "Sign out": "退出",
    "Chart": "图表", "Grants and denials per day, last %(n)s days":
    "最近 %(n)s 天每日放行与拒绝", "granted": "放行", "denied": "拒绝",
    "No events in this time.": "此期间没有事件。", "Sign-in code": "登录码",
    "Your sign-in code for the resident page (valid %(d)s days, once):":
    "您的住户页面登录码（%(d)s 天内有效，仅可使用一次）：",
    "Open /me/login on your phone and type it.": "在手机上打开 /me/login 并输入此码。",
    "Print": "打印", "Back": "返回", "Cancel": "取消",
    "The live channel is not set up for this site (accessctl broker setup): door states and "
    "alarms arrive with the nightly upload only.":
    "本站点尚未设置实时通道（accessctl broker setup）：门状态和警报只随夜间上传到达。",
    "NOT RECEIVING: the broker cannot be reached; reconnecting.": "未在接收：无法连接消息服务器，正在重连。",
    "Grants and denials per day": "每日放行与拒绝", "Group": "门组", "Sync now": "立即同步",
    "Set mode": "设置模式", "Unlock": "开门",
    "The live channel is not set up: remote commands need it (accessctl broker setup).":
    "尚未设置实时通道：远程命令需要它（accessctl broker setup）。",
    "Import doors from CSV (door, group, description, readers)":
    "从 CSV 导入门（door, group, description, readers）", "Import": "导入", "Not done": "未完成",
    "Import residents": "导入住户", "Import residents from CSV": "从 CSV 导入住户",
    "Columns: name, unit, role, phone, kind, uid, groups, valid_from, valid_until. Every "
    "line is checked first; if one is wrong, nothing is stored.":
    "列：name, unit, role, phone, kind, uid, groups, valid_from, valid_until。先检查每一行；"
    "只要有一行出错，就什么都不保存。",
    "Imported: %(p)s people, %(c)s credentials, %(g)s grants (%(u)s unchanged).":
    "已导入：%(p)s 人，%(c)s 个凭证，%(g)s 项授权（%(u)s 项未变）。",
    "Nothing was imported. Fix these lines and try again:": "未导入任何内容。请修正以下各行后重试：",
    "line %(n)s": "第 %(n)s 行", "Check and import": "检查并导入", "Sign in": "登录",
    "Staff sign-in": "员工登录", "Password": "密码",
    "Residents: sign in with your code": "住户：用登录码登录", "Door events": "门禁事件",
    "any": "全部", "Person": "人员", "Event": "事件", "From": "从", "Until": "到",
    "Show": "显示", "Export CSV": "导出 CSV", "Reason": "原因", "No events.": "没有事件。",
    "Older": "更早", "My doors": "我的门禁", "Hello, %(name)s": "您好，%(name)s",
    "My cards and fobs": "我的门卡和钥匙扣", "I lost it": "我丢失了", "None.": "无。",
    "A pass for a visitor or courier": "为访客或快递员开通行证",
    "You have issued %(n)s of %(m)s passes in the last 30 days.":
    "最近 30 天您已开了 %(n)s 张通行证（上限 %(m)s 张）。", "For": "给谁",
    "e.g. Grandson Tom": "例如：孙子小明", "visitor": "访客", "courier": "快递员",
    "Building": "楼栋", "Hours": "小时", "Days": "天数", "Entries": "次数", "Make the pass": "生成通行证",
    "My door events": "我的门禁记录", "None yet.": "暂无。", "%(n)s entries": "%(n)s 次",
    "Shown once: print it or send it now; the office does not keep it.":
    "只显示一次：请现在打印或发送；物业不保存它。", "Pass text": "通行证文本",
    "Visitor and courier passes": "访客和快递员通行证", "Issue a pass": "开通行证",
    "DHL courier": "顺丰快递员", "Door group": "门组", "now": "现在", "Issue": "开具",
    "Times: 2026-12-24T18:00, a date, or 8h from now, in the site's time zone.":
    "时间：2026-12-24T18:00、一个日期，或 8h（从现在起），按站点时区。", "Pass": "通行证",
    "Issued by": "开具人", "Revoke": "注销", "No passes running.": "没有有效的通行证。",
    "Name or unit": "姓名或单元", "Search": "搜索", "Add a person": "添加人员",
    "Phone": "电话", "Add": "添加", "Schedule": "时间表", "always": "全天",
    "Credentials": "凭证", "Id": "编号", "Kind": "类型", "Fingerprint": "指纹",
    "Status": "状态", "Valid": "有效期", "duress": "胁迫", "Report lost": "挂失",
    "Enrol": "登记", "Number printed on it, card UID, or PIN": "印在上面的号码、卡 UID 或 PIN",
    "A fob's number in any printed form (0004512345, 068,58905, 44CC7B…); a PIN is typed "
    "once here and never shown again.":
    "钥匙扣号码可用任何印刷格式（0004512345、068,58905、44CC7B…）；PIN 只在此输入一次，之后不再显示。",
    "fob": "钥匙扣", "nfc": "NFC 卡", "pin": "PIN 码", "Present it at door": "在此门刷一下",
    "Wait for it (30 s)": "等待刷卡（30 秒）",
    "Read a card on the office reader (30 s)": "在办公室读卡器上读卡（30 秒）", "Door groups": "门组", "remove": "移除",
    "Grant": "授权", "Resident page": "住户页面", "Print a sign-in code": "打印登录码",
    "Their door events": "其门禁记录", "Publish the whitelist": "发布白名单",
    "Version %(v)s is published to %(s)s.": "版本 %(v)s 已发布到 %(s)s。",
    "Publish now": "立即发布", "Version %(v)s": "版本 %(v)s",
    "Sign in with your code": "用登录码登录", "Type the code the office printed for you.":
    "输入物业为您打印的登录码。", "Code": "登录码", "Staff accounts": "员工账户",
    "Change role": "更改角色", "new password": "新密码", "Set password": "设置密码",
    "Remove": "删除", "Add an account": "添加账户",
    "Password (10 characters or more)": "密码（至少 10 个字符）",
    "What residents may issue": "住户可开具的通行证", "Passes in 30 days": "30 天内张数",
    "Hours a pass lasts, at most": "每张最长小时数", "Entries per pass, at most": "每张最多次数",
    "Save": "保存", "Account {n} added.": "已添加账户 {n}。", "Saved.": "已保存。",
    "Alarm #{n} acknowledged.": "警报 #{n} 已确认。",
    "Make door {d} fetch its whitelist now?": "让门 {d} 立即获取白名单？",
    "Set door {d} to {m}?": "将门 {d} 设为 {m}？", "Open door {d} once, now?": "现在打开门 {d} 一次？",
    "Yes": "是", "Door {d}: done.": "门 {d}：完成。", "Doors imported.": "门已导入。",
    "Revoke this pass?": "注销此通行证？", "Yes, revoke it": "是，注销",
    "Pass revoked; publish to update the doors.": "通行证已注销；请发布以更新各门。",
    "Added.": "已添加。", "Enrolled {kind} {fp}; publish to update the doors.":
    "已登记 {kind} {fp}；请发布以更新各门。", "Revoke this credential?": "注销此凭证？",
    "Report this credential lost?": "挂失此凭证？", "Yes, it is lost": "是，已丢失",
    "Done; publish to update the doors.": "完成；请发布以更新各门。",
    "Nothing to publish: no door group has doors yet.": "无可发布内容：还没有任何门组包含门。",
    "Published; the doors could not be told at once ({e}): they fetch it at their next poll.":
    "已发布；未能立即通知各门（{e}）：它们会在下次轮询时获取。",
    "Published version {v}.": "已发布版本 {v}。", "Report this card or fob lost?": "挂失此门卡或钥匙扣？",
    "It stops opening doors at once.": "它将立即无法开门。",
    "Marked lost. The doors will learn it at the office's next publish.":
    "已挂失。各门将在物业下次发布时得知。", "Marked lost; the doors have been told.": "已挂失；已通知各门。",
    # words the pages show from data (states, roles, statuses, events, sign-in answers)
    "online": "在线", "offline": "离线", "unknown": "未知", "silent": "无响应",
    "resident": "住户", "staff": "员工", "admin": "管理员", "auditor": "审计员",
    "contractor": "施工人员", "active": "有效", "lost": "已挂失", "suspended": "已暂停",
    "revoked": "已注销", "access.granted": "放行", "access.denied": "拒绝",
    "Opened": "已开门", "Refused": "被拒绝", "Waiting for the PIN": "等待输入 PIN",
    "wrong name or password": "用户名或密码错误",
    "too many failed sign-ins: try again in a quarter of an hour, or ask an administrator":
    "登录失败次数过多：请一刻钟后再试，或联系管理员",
    "this code is wrong, used or expired: ask the office for a new one":
    "此登录码错误、已使用或已过期：请向物业索取新码",
    "too many wrong codes: try again in a quarter of an hour": "错误次数过多：请一刻钟后再试",
}


def main() -> int:
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po
    with tempfile.TemporaryDirectory() as tmp:
        pot = Path(tmp) / "messages.pot"
        subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F",
                        str(ROOT / "babel.cfg"), "-k", "_", "--no-location", "-o", str(pot),
                        str(ROOT)], check=True, capture_output=True)
        with open(pot, "rb") as fh:
            template = read_po(fh)
    cat = Catalog(locale="zh_CN", project="accessd", domain="messages")
    ids = [m.id for m in template if m.id] + [k for k in ZH if k not in template]
    missing = []
    for mid in ids:
        cat.add(mid, ZH.get(mid, ""))
        if mid not in ZH:
            missing.append(mid)
    PO.parent.mkdir(parents=True, exist_ok=True)
    with open(PO, "wb") as fh:
        write_po(fh, cat, width=100, omit_header=False, sort_output=True)
    print(f"{PO.relative_to(ROOT)}: {len(ids)} strings, {len(missing)} untranslated")
    for m in missing:
        print("  untranslated:", m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
