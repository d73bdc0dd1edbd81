"""What people do in the WeCom client and admin console, and the callbacks that follow.

A customer scans a 「联系我」 code, a member deletes a customer or edits a remark, an admin
renames a tag, a group gains members, a transfer completes: each mutation changes the
simulator's state and, unless ``emit=False``, delivers the event WeCom would send
(WECOM.md §2.5-2.7) to the configured callback URL. Calls made through the API emit
nothing, like WeCom: "通过API进行的操作不会产生回调" (DOC/96361).
"""

from __future__ import annotations

import secrets
from typing import Any

from channels.wecom.simulator.api import delete_tags
from channels.wecom.simulator.api_business import confirm_template
from channels.wecom.simulator.api_misc import member_version
from channels.wecom.simulator.data import Dataset, FollowData, TagDef, TagGroupDef
from channels.wecom.simulator.emitter import (
    CallbackEmitter,
    change_external_chat_xml,
    change_external_contact_xml,
    change_external_tag_xml,
)
from channels.wecom.simulator.state import OAUTH_CODE_TTL, SimState, WelcomeCode


class CorpActions:
    """Mixin of :class:`~channels.wecom.simulator.control.Simulator`: mutations + callbacks."""

    state: SimState
    dataset: Dataset
    corp_id: str
    callback_url: str | None
    emitter: CallbackEmitter

    # -- callbacks -------------------------------------------------------------------

    def deliver(
        self,
        xml: str,
        *,
        url: str | None = None,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
    ) -> dict[str, Any] | None:
        """Encrypt and POST ``xml`` to ``url`` or the configured callback URL (None: skip)."""
        target = url or self.callback_url
        if not target:
            return None
        delivery = self.emitter.post(
            target,
            xml,
            forge_signature=forge_signature,
            wrong_corp_id=wrong_corp_id,
            bad_base64=bad_base64,
        )
        return delivery.as_dict()

    def emit_event(
        self,
        event: str = "change_external_contact",
        *,
        url: str | None = None,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send any event, mutating nothing: ``emit_event(change_type=..., userid=..., ...)``,
        ``emit_event("change_external_tag", change_type=..., tag_id=...)``,
        ``emit_event("change_external_chat", chat_id=..., change_type=...)`` or
        ``emit_event("raw", xml=...)``."""
        if event == "change_external_contact":
            xml = change_external_contact_xml(self.corp_id, **fields)
        elif event == "change_external_tag":
            xml = change_external_tag_xml(self.corp_id, **fields)
        elif event == "change_external_chat":
            xml = change_external_chat_xml(self.corp_id, **fields)
        elif event == "raw":
            xml = str(fields["xml"])
        else:
            raise ValueError(f"unknown event {event!r}")
        delivery = self.deliver(
            xml,
            url=url,
            forge_signature=forge_signature,
            wrong_corp_id=wrong_corp_id,
            bad_base64=bad_base64,
        )
        if delivery is None:
            raise ValueError("no callback URL: pass url= or configure callback_url")
        return {"xml": xml, "callback": delivery}

    def verify_callback(
        self,
        *,
        url: str | None = None,
        echostr: str | None = None,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
    ) -> dict[str, Any]:
        """WeCom's URL verification GET; ``ok`` is whether the plaintext came back exactly."""
        target = url or self.callback_url
        if not target:
            raise ValueError("no callback URL: pass url= or configure callback_url")
        delivery, expected = self.emitter.verify_url(
            target,
            echostr,
            forge_signature=forge_signature,
            wrong_corp_id=wrong_corp_id,
            bad_base64=bad_base64,
        )
        # "不能加引号, 不能带bom头, 不能带换行符": the body must be the plaintext, exactly.
        return {
            **delivery.as_dict(),
            "expected": expected,
            "ok": delivery.ok and delivery.body == expected,
        }

    # -- control: customers and follows ----------------------------------------------

    def _contact(self, external_userid: str) -> int:
        i = self.state.contact_index(external_userid)
        if i is None:
            raise ValueError(f"unknown external_userid {external_userid!r}")
        return i

    def _staff(self, userid: str) -> int:
        s = self.dataset.user_index.get(userid)
        if s is None:
            raise ValueError(f"unknown userid {userid!r}")
        return s

    def mint_welcome_code(self, userid: str, external_userid: str) -> str:
        st = self.state
        with st.lock:
            code = secrets.token_urlsafe(32)
            i, s = self._contact(external_userid), self._staff(userid)
            st.welcome_codes[code] = WelcomeCode(code, i, s, st.clock())
            return code

    def add_contact(
        self,
        userid: str | None = None,
        *,
        external_userid: str | None = None,
        config_id: str | None = None,
        state: str | None = None,
        name: str | None = None,
        welcome_code: bool = True,
        half: bool = False,
        add_way: int | None = None,
        remark: str = "",
        tags: list[str] | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        """A customer adds a member: by scanning ``config_id``'s code (its user and state),
        or directly. ``external_userid`` of an existing customer adds another follow;
        an unknown one becomes the new customer's id. Emits add_external_contact (or
        add_half_external_contact) with State and a fresh WelcomeCode."""
        st = self.state
        with st.lock:
            way = None
            if config_id:
                way = st.contact_ways.get(config_id)
                if way is None:
                    raise ValueError(f"unknown config_id {config_id!r}")
            if userid is None:
                userid = way.user[0] if way and way.user else self.dataset.staff_ids[0]
            s = self._staff(userid)
            channel_state = state if state is not None else (way.state if way else "")
            if len(channel_state) > 30:
                raise ValueError("state is at most 30 characters")
            i = st.contact_index(external_userid) if external_userid else None
            if i is None:
                i = st.new_contact(name=name, external_userid=external_userid)
            elif st.is_follow(i, s):
                raise ValueError(f"{external_userid} is already a contact of {userid}")
            eid = st.eid(i)
            if tags:
                unknown = [t for t in tags if t not in st.tags]
                if unknown:
                    raise ValueError(f"unknown tag ids {unknown}")
            data = FollowData(
                userid=userid,
                remark=remark,
                createtime=int(st.clock()),
                tag_ids=list(tags or []),
                oper_userid=eid,  # the customer added the member
                add_way=add_way if add_way is not None else (1 if channel_state or way else 3),
                state=channel_state,
            )
            st.add_follow(i, s, data)
            code = None
            if welcome_code:
                code = secrets.token_urlsafe(32)
                st.welcome_codes[code] = WelcomeCode(code, i, s, st.clock())
        xml = change_external_contact_xml(
            self.corp_id,
            "add_half_external_contact" if half else "add_external_contact",
            userid,
            eid,
            state=channel_state,
            welcome_code=code,
        )
        return {
            "external_userid": eid,
            "userid": userid,
            "state": channel_state,
            "welcome_code": code,
            "callback": self.deliver(xml) if emit else None,
        }

    def delete_follow(
        self,
        userid: str,
        external_userid: str,
        *,
        by: str = "staff",
        source: str | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        """End a relationship: ``by="staff"`` (del_external_contact, optional Source) or
        ``by="customer"`` (del_follow_user)."""
        if by not in ("staff", "customer"):
            raise ValueError("by is 'staff' or 'customer'")
        st = self.state
        with st.lock:
            i, s = self._contact(external_userid), self._staff(userid)
            if not st.delete_follow(i, s):
                raise ValueError(f"{external_userid} is not a contact of {userid}")
        change = "del_external_contact" if by == "staff" else "del_follow_user"
        xml = change_external_contact_xml(
            self.corp_id, change, userid, external_userid, source=source
        )
        return {"deleted": True, "callback": self.deliver(xml) if emit else None}

    def edit_follow(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_mobiles: list[str] | None = None,
        add_tags: list[str] | None = None,
        remove_tags: list[str] | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        """A member edits remark/tags in the client: edit_external_contact."""
        st = self.state
        with st.lock:
            i, s = self._contact(external_userid), self._staff(userid)
            if not st.is_follow(i, s):
                raise ValueError(f"{external_userid} is not a contact of {userid}")
            changes: dict[str, Any] = {}
            if remark is not None:
                changes["remark"] = remark
            if description is not None:
                changes["description"] = description
            if remark_mobiles is not None:
                changes["remark_mobiles"] = list(remark_mobiles)
            if add_tags or remove_tags:
                unknown = [t for t in add_tags or [] if t not in st.tags]
                if unknown:
                    raise ValueError(f"unknown tag ids {unknown}")
                current = [t for t in st.follow_data(i, s).tag_ids if t not in (remove_tags or [])]
                changes["tag_ids"] = current + [t for t in add_tags or [] if t not in current]
            fd = st.edit_follow(i, s, **changes)
        xml = change_external_contact_xml(
            self.corp_id, "edit_external_contact", userid, external_userid
        )
        return {
            "tag_ids": st.live_tags(fd.tag_ids),
            "remark": fd.remark,
            "callback": self.deliver(xml) if emit else None,
        }

    def resign_staff(self, userid: str, dimission_time: int | None = None) -> dict[str, Any]:
        """The member leaves: gone from get_follow_user_list, customers become unassigned."""
        st = self.state
        with st.lock:
            s = self._staff(userid)
            st.resigned[s] = int(dimission_time if dimission_time is not None else st.clock())
        return {"userid": userid, "dimission_time": st.resigned[s]}

    def complete_transfers(
        self,
        *,
        handover_userid: str | None = None,
        takeover_userid: str | None = None,
        external_userid: str | None = None,
        status: int = 1,
        emit: bool = True,
    ) -> dict[str, Any]:
        """Finish waiting transfers as the 24 h clock would: status 1 moves the follow to
        the takeover member (del_external_contact with Source DELETE_BY_TRANSFER for an
        on-job transfer); 3 (refused) and 4 (takeover full) emit transfer_fail."""
        if status not in (1, 3, 4):
            raise ValueError("status is 1 (done), 3 (refused) or 4 (takeover over limit)")
        st = self.state
        events: list[str] = []
        done = 0
        with st.lock:
            now = int(st.clock())
            ids = self.dataset.staff_ids
            for t in st.transfers:
                if t.status != 2:
                    continue
                if handover_userid and ids[t.handover] != handover_userid:
                    continue
                if takeover_userid and ids[t.takeover] != takeover_userid:
                    continue
                eid = st.eid(t.contact)
                if external_userid and eid != external_userid:
                    continue
                done += 1
                t.status = status
                if status != 1:
                    reason = "customer_refused" if status == 3 else "customer_limit_exceed"
                    events.append(
                        change_external_contact_xml(
                            self.corp_id, "transfer_fail", ids[t.takeover], eid, fail_reason=reason
                        )
                    )
                    continue
                t.takeover_time = now
                old = st.follow_data(t.contact, t.handover)
                st.delete_follow(t.contact, t.handover)
                if not st.is_follow(t.contact, t.takeover):
                    st.add_follow(
                        t.contact,
                        t.takeover,
                        FollowData(
                            userid=ids[t.takeover],
                            remark=old.remark,
                            description=old.description,
                            createtime=now,
                            tag_ids=list(old.tag_ids),
                            remark_mobiles=list(old.remark_mobiles),
                            oper_userid=ids[t.handover],
                            add_way=202,  # 管理员/负责人分配
                            state=old.state,
                        ),
                    )
                if t.kind == "onjob":
                    events.append(
                        change_external_contact_xml(
                            self.corp_id,
                            "del_external_contact",
                            ids[t.handover],
                            eid,
                            source="DELETE_BY_TRANSFER",
                        )
                    )
        callbacks = [self.deliver(x) for x in events] if emit else []
        return {"completed": done, "callbacks": callbacks}

    def confirm_groupmsg(self, msgid: str, userid: str | None = None) -> dict[str, Any]:
        """The member taps "send" for a mass message (when auto-confirm is off)."""
        st = self.state
        with st.lock:
            template = st.templates.get(msgid)
            if template is None:
                raise ValueError(f"unknown msgid {msgid!r}")
            return {"sent": confirm_template(st, template, userid)}

    def mint_oauth_code(self, userid: str) -> str:
        """A one-shot OAuth code for auth/getuserinfo (a member's userid, or an
        external_userid for a customer opening the page)."""
        st = self.state
        if userid not in self.dataset.user_index and st.contact_index(userid) is None:
            raise ValueError(f"unknown userid {userid!r}")
        code = secrets.token_urlsafe(24)
        with st.lock:
            st.oauth_codes[code] = (userid, st.clock() + OAUTH_CODE_TTL)
        return code

    # -- control: tags and chats (admin-console actions) ------------------------------

    def create_tag(
        self,
        name: str,
        *,
        group_name: str | None = None,
        group_id: str | None = None,
        order: int = 0,
        emit: bool = True,
    ) -> dict[str, Any]:
        st = self.state
        xmls = []
        with st.lock:
            now = int(st.clock())
            group = st.groups.get(group_id) if group_id else None
            if group_id and group is None:
                raise ValueError(f"unknown group_id {group_id!r}")
            if group is None:
                gname = group_name or "未分组"
                group = next((g for g in st.groups.values() if g.group_name == gname), None)
                if group is None:
                    group = TagGroupDef(st.new_id("group"), gname, now, 0)
                    st.groups[group.group_id] = group
                    xmls.append(
                        change_external_tag_xml(
                            self.corp_id, "create", group.group_id, tag_type="tag_group"
                        )
                    )
            tag = TagDef(st.new_id("tag"), name, group.group_id, now, order)
            group.tags.append(tag)
            st.tags[tag.id] = tag
        xmls.append(change_external_tag_xml(self.corp_id, "create", tag.id))
        return {
            "tag_id": tag.id,
            "group_id": group.group_id,
            "callbacks": [self.deliver(x) for x in xmls] if emit else [],
        }

    def update_tag(
        self, id: str, *, name: str | None = None, order: int | None = None, emit: bool = True
    ) -> dict[str, Any]:
        st = self.state
        with st.lock:
            target: TagDef | TagGroupDef | None = st.tags.get(id) or st.groups.get(id)
            if target is None:
                raise ValueError(f"unknown tag or group id {id!r}")
            if name is not None:
                if isinstance(target, TagDef):
                    target.name = name
                else:
                    target.group_name = name
            if order is not None:
                target.order = order
        kind = "tag" if isinstance(target, TagDef) else "tag_group"
        xml = change_external_tag_xml(self.corp_id, "update", id, tag_type=kind)
        return {"callback": self.deliver(xml) if emit else None}

    def delete_tag(self, id: str, *, emit: bool = True) -> dict[str, Any]:
        st = self.state
        with st.lock:
            if id in st.tags:
                kind = "tag"
                delete_tags(st, [id], [])
            elif id in st.groups:
                kind = "tag_group"
                delete_tags(st, [], [id])
            else:
                raise ValueError(f"unknown tag or group id {id!r}")
        xml = change_external_tag_xml(self.corp_id, "delete", id, tag_type=kind)
        return {"callback": self.deliver(xml) if emit else None}

    def shuffle_tags(self, group_id: str, *, emit: bool = True) -> dict[str, Any]:
        """Reverse the tag order in a group: "shuffle", whose Id is the group id."""
        st = self.state
        with st.lock:
            group = st.groups.get(group_id)
            if group is None:
                raise ValueError(f"unknown group_id {group_id!r}")
            orders = sorted((t.order for t in group.tags), reverse=True)
            for t, o in zip(sorted(group.tags, key=lambda t: t.order), orders, strict=True):
                t.order = o
        xml = change_external_tag_xml(self.corp_id, "shuffle", group_id, tag_type="tag_group")
        return {"callback": self.deliver(xml) if emit else None}

    def chat_event(
        self,
        change_type: str,
        *,
        chat_id: str | None = None,
        owner: str | None = None,
        name: str | None = None,
        update_detail: str = "add_member",
        members: list[str] | None = None,
        join_scene: int = 0,
        quit_scene: int = 0,
        emit: bool = True,
    ) -> dict[str, Any]:
        """A customer group changes: create (by ``owner``), update (add_member/del_member/
        change_owner/change_name/change_notice) or dismiss."""
        st = self.state
        with st.lock:
            now = int(st.clock())
            last = cur = None
            if change_type == "create":
                owner = owner or self.dataset.staff_ids[0]
                self._staff(owner)
                chat_id = "wr" + st.new_id("chat")[2:]
                st.chats[chat_id] = {
                    "chat_id": chat_id,
                    "name": name or "新建客户群",
                    "owner": owner,
                    "create_time": now,
                    "notice": "",
                    "status": 0,
                    "admin_list": [],
                    "member_list": [
                        {
                            "userid": owner,
                            "type": 1,
                            "join_time": now,
                            "join_scene": 1,
                            "group_nickname": "",
                            "name": self.dataset.staff_names[self._staff(owner)],
                        }
                    ],
                }
            else:
                if not chat_id or chat_id not in st.chats:
                    raise ValueError(f"unknown chat_id {chat_id!r}")
                chat = st.chats[chat_id]
                if change_type == "dismiss":
                    del st.chats[chat_id]
                elif change_type == "update":
                    last = member_version(chat)
                    self._update_chat(
                        chat, update_detail, members or [], owner, name, join_scene, now
                    )
                    cur = member_version(chat)
                else:
                    raise ValueError("change_type is create, update or dismiss")
        has_members = change_type == "update" and update_detail in ("add_member", "del_member")
        xml = change_external_chat_xml(
            self.corp_id,
            chat_id,
            change_type,
            update_detail=update_detail if change_type == "update" else None,
            join_scene=join_scene if has_members else None,
            quit_scene=quit_scene if has_members else None,
            members=list(members or []) if has_members else None,
            last_mem_ver=last if has_members else None,
            cur_mem_ver=cur if has_members else None,
        )
        return {"chat_id": chat_id, "callback": self.deliver(xml) if emit else None}

    def _update_chat(
        self,
        chat: dict[str, Any],
        detail: str,
        members: list[str],
        owner: str | None,
        name: str | None,
        join_scene: int,
        now: int,
    ) -> None:
        st = self.state
        if detail == "add_member":
            for m in members:
                if any(x["userid"] == m for x in chat["member_list"]):
                    continue
                s = self.dataset.user_index.get(m)
                if s is not None:
                    row = {"userid": m, "type": 1, "name": self.dataset.staff_names[s]}
                else:
                    row = {
                        "userid": m,
                        "type": 2,
                        "name": st.contact_json(self._contact(m))["name"],
                    }
                row.update(
                    {
                        "join_time": now,
                        "join_scene": 3 if join_scene == 3 else 1,
                        "group_nickname": "",
                    }
                )
                chat["member_list"].append(row)
        elif detail == "del_member":
            chat["member_list"] = [x for x in chat["member_list"] if x["userid"] not in members]
        elif detail == "change_owner":
            if not owner:
                raise ValueError("change_owner needs owner")
            self._staff(owner)
            chat["owner"] = owner
        elif detail == "change_name":
            chat["name"] = name or chat["name"]
        elif detail == "change_notice":
            chat["notice"] = name or ""
        else:
            raise ValueError(f"unknown update_detail {detail!r}")
