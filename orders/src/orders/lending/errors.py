"""What lending refuses, each naming its rule (rendered by `orders.problems`)."""

from __future__ import annotations

from datetime import date

from orders.problems import Rule, RuleRefusal, ShopOffer
from servicekit.problems import (
    VALIDATION_ERROR,
    VALIDATION_ERROR_CODE,
    ProblemError,
    validation_detail,
)


class MemberNotFound(ProblemError):
    status, title, type = 404, "Member not found", "/problems/member-not-found"
    code = "MEMBER_NOT_FOUND"

    def __init__(self, member_id: int) -> None:
        super().__init__(f"No member has id {member_id}.")


class UnknownMember(ProblemError):
    """A request body names a member that does not exist (or was deleted)."""

    status, title, type = 422, "Unknown member", "/problems/unknown-member"
    code = "UNKNOWN_MEMBER"

    def __init__(self, member_id: int, *, where: str = "body") -> None:
        super().__init__(
            f"Member {member_id} does not exist.",
            errors=[{"field": "member_id", "in": where, "message": "no such member"}],
        )


class UnknownBook(ProblemError):
    status, title, type = 422, "Unknown book", "/problems/unknown-book"
    code = "BOOK_NOT_FOUND"

    def __init__(self, book_id: int, *, where: str = "body") -> None:
        super().__init__(
            f"Book {book_id} does not exist or was removed from the catalog.",
            errors=[{"field": "book_id", "in": where, "message": "no such book"}],
        )


class EmailTaken(ProblemError):
    status, title, type = 409, "Email already registered", "/problems/email-taken"
    code = "EMAIL_TAKEN"

    def __init__(self, email: str) -> None:
        super().__init__(
            f"Another member already uses {email}; emails are unique, ignoring case.",
            errors=[{"field": "email", "in": "body", "message": "already registered"}],
        )


class MemberBlocked(RuleRefusal, ProblemError):
    status, title, type = 403, "Member blocked", "/problems/member-blocked"
    code = "MEMBER_BLOCKED"

    def __init__(self, member_id: int) -> None:
        super().__init__(
            f"Member {member_id} is blocked and cannot borrow or place holds; "
            "a librarian can set their status back to active.",
            rule=Rule(name="member_status"),
        )


class TooManyOverdue(RuleRefusal, ProblemError):
    status, title, type = 403, "Member blocked", "/problems/member-blocked"
    code = "MEMBER_BLOCKED"

    def __init__(self, member_id: int, *, limit: int, current: int) -> None:
        super().__init__(
            f"Member {member_id} has {current} loan(s) overdue and their category allows "
            f"{limit}; they cannot borrow, renew or place holds until they return some.",
            rule=Rule(name="max_overdue_loans", limit=limit, current=current),
        )


class OwesTooMuch(RuleRefusal, ProblemError):
    status, title, type = 403, "Member blocked", "/problems/member-blocked"
    code = "MEMBER_BLOCKED"

    def __init__(self, member_id: int, *, limit: str, current: str) -> None:
        super().__init__(
            f"Member {member_id} owes {current} in fines and their category allows at most "
            f"{limit}; they cannot borrow, renew or place holds until they pay (see "
            f"/v1/members/{member_id}/ledger).",
            rule=Rule(name="max_balance", limit=limit, current=current),
        )


class PastFinalNotice(RuleRefusal, ProblemError):
    status, title, type = 403, "Member blocked", "/problems/member-blocked"
    code = "MEMBER_BLOCKED"

    def __init__(self, member_id: int, *, current: int) -> None:
        super().__init__(
            f"Member {member_id} still has {current} loan(s) out after their final overdue "
            "notice, and their category blocks such members; they cannot borrow, renew or "
            "place holds until they return them.",
            rule=Rule(name="block_after_final_notice", limit=0, current=current),
        )


class OverrideNotAllowed(ProblemError):
    status, title, type = 403, "Override not allowed", "/problems/override-not-allowed"
    code = "OVERRIDE_NOT_ALLOWED"

    def __init__(self) -> None:
        super().__init__(
            "Only library staff (a desk or admin key) may override a member's block; "
            "send the request without `override_reason`, or ask at the desk.",
            errors=[{"field": "override_reason", "in": "query", "message": "staff only"}],
        )


class LoanLimitReached(RuleRefusal, ProblemError):
    status, title, type = 409, "Loan limit reached", "/problems/loan-limit-reached"
    code = "LOAN_LIMIT_REACHED"

    def __init__(self, member_id: int, *, limit: int, current: int) -> None:
        super().__init__(
            f"Member {member_id} already has {current} loan(s) out or requested and their "
            f"limit is {limit}; return a book first.",
            rule=Rule(name="max_loans", limit=limit, current=current),
        )


class KindLimitReached(RuleRefusal, ProblemError):
    status, title, type = 409, "Loan limit reached", "/problems/loan-limit-reached"
    code = "LOAN_LIMIT_REACHED"

    def __init__(
        self, member_id: int, *, item_type: str, policy_id: int, limit: int, current: int
    ) -> None:
        super().__init__(
            f"Member {member_id} already has {current} loan(s) of item type {item_type!r} out "
            f"or requested and policy {policy_id} allows {limit}; return one first.",
            rule=Rule(name="max_loans_of_kind", policy_id=policy_id, limit=limit, current=current),
        )


class AlreadyBorrowed(ProblemError):
    status, title, type = 409, "Book already borrowed", "/problems/already-borrowed"
    code = "ALREADY_BORROWED"

    def __init__(self, member_id: int, book_id: int) -> None:
        super().__init__(f"Member {member_id} already has book {book_id} out or requested.")


class NotLendable(ShopOffer, ProblemError):
    status, title, type = 409, "Book not lendable", "/problems/book-not-lendable"
    code = "BOOK_NOT_LENDABLE"

    def __init__(self, book_id: int) -> None:
        super().__init__(f"Book {book_id} has no lendable copies; it can only be bought.")


class NotLendableByPolicy(ShopOffer, RuleRefusal, ProblemError):
    status, title, type = 409, "Book not lendable", "/problems/book-not-lendable"
    code = "BOOK_NOT_LENDABLE"

    def __init__(self, book_id: int, *, item_type: str, policy_id: int) -> None:
        super().__init__(
            f"Book {book_id} is of item type {item_type!r}, which policy {policy_id} does "
            "not lend to this member; it can only be bought or read here.",
            rule=Rule(name="not_lendable", policy_id=policy_id),
        )


class HoldsNotAllowed(ShopOffer, RuleRefusal, ProblemError):
    status, title, type = 409, "Holds not allowed", "/problems/holds-not-allowed"
    code = "HOLDS_NOT_ALLOWED"

    def __init__(self, book_id: int, *, item_type: str, policy_id: int) -> None:
        super().__init__(
            f"Book {book_id} is of item type {item_type!r}, which policy {policy_id} does "
            "not let this member hold.",
            rule=Rule(name="holds_not_allowed", policy_id=policy_id),
        )


class MemberHasLoans(ProblemError):
    status, title, type = 409, "Member has loans out", "/problems/member-has-loans"
    code = "MEMBER_HAS_LOANS"

    def __init__(self, member_id: int, loans_out: int) -> None:
        super().__init__(
            f"Member {member_id} still has {loans_out} loan(s) out or requested; "
            "they must be returned before the member is deleted."
        )


class BorrowNotFound(ProblemError):
    status, title, type = 404, "Borrow not found", "/problems/borrow-not-found"
    code = "BORROW_NOT_FOUND"

    def __init__(self, borrow_id: int) -> None:
        super().__init__(f"No borrow has id {borrow_id}.")


class HoldNotFound(ProblemError):
    status, title, type = 404, "Hold not found", "/problems/hold-not-found"
    code = "HOLD_NOT_FOUND"

    def __init__(self, hold_id: int) -> None:
        super().__init__(f"No hold has id {hold_id}.")


class RenewalRefused(RuleRefusal, ProblemError):
    status, title, type = 409, "Renewal refused", "/problems/renewal-refused"
    code = "RENEWAL_REFUSED"


class AlreadyHolding(ProblemError):
    status, title, type = 409, "Already on hold", "/problems/already-holding"
    code = "ALREADY_HOLDING"

    def __init__(self, member_id: int, book_id: int) -> None:
        super().__init__(f"Member {member_id} already has an open hold on book {book_id}.")


class HoldNotReady(ProblemError):
    status, title, type = 409, "Hold not ready", "/problems/hold-not-ready"
    code = "HOLD_NOT_READY"

    def __init__(self, hold_id: int, status: str) -> None:
        super().__init__(
            f"Hold {hold_id} is {status}; only a ready hold (a copy set aside) can be checked out."
        )


class UnknownCategory(ProblemError):
    status, title, type = 422, "Unknown member category", "/problems/unknown-category"
    code = "UNKNOWN_CATEGORY"

    def __init__(self, code: str, *, field: str = "category") -> None:
        super().__init__(
            f"There is no member category {code!r}; GET /v1/member-categories lists them.",
            errors=[{"field": field, "in": "body", "message": "no such member category"}],
        )


class CategoryNotFound(ProblemError):
    status, title, type = 404, "Member category not found", "/problems/category-not-found"
    code = "CATEGORY_NOT_FOUND"

    def __init__(self, code: str) -> None:
        super().__init__(f"There is no member category {code!r}.")


class CategoryExists(ProblemError):
    status, title, type = 409, "Member category exists", "/problems/category-exists"
    code = "CATEGORY_EXISTS"

    def __init__(self, code: str) -> None:
        super().__init__(f"A member category {code!r} exists already.")


class CategoryInUse(ProblemError):
    status, title, type = 409, "Member category in use", "/problems/category-in-use"
    code = "CATEGORY_IN_USE"

    def __init__(self, code: str) -> None:
        super().__init__(
            f"Members or policies still name category {code!r}; move them to another "
            "category before deleting it."
        )


class PolicyNotFound(ProblemError):
    status, title, type = 404, "Policy not found", "/problems/policy-not-found"
    code = "POLICY_NOT_FOUND"

    def __init__(self, policy_id: int) -> None:
        super().__init__(f"No lending policy has id {policy_id}.")


class PolicyMatchTaken(ProblemError):
    status, title, type = 409, "Policy match taken", "/problems/policy-match-taken"
    code = "POLICY_MATCH_TAKEN"

    def __init__(self, member_category: str | None, item_type: str | None) -> None:
        super().__init__(
            f"A policy for member category {member_category or 'any'} and item type "
            f"{item_type or 'any'} exists already; change that one instead.",
            errors=[
                {"field": "member_category", "in": "body", "message": "match taken"},
                {"field": "item_type", "in": "body", "message": "match taken"},
            ],
        )


class DefaultPolicyKept(ProblemError):
    status, title, type = 409, "Default policy", "/problems/default-policy"
    code = "DEFAULT_POLICY"

    def __init__(self, policy_id: int, what: str) -> None:
        super().__init__(
            f"Policy {policy_id} is the default (any category, any item type): {what}."
        )


class CreditExceedsBalance(ProblemError):
    """A payment or waiver larger than what the member owes: the ledger never goes below 0."""

    status, title, type = 409, "More than the member owes", "/problems/credit-exceeds-balance"
    code = "CREDIT_EXCEEDS_BALANCE"

    def __init__(self, member_id: int, *, kind: str, amount: str, balance: str) -> None:
        super().__init__(
            f"A {kind} of {amount} is more than member {member_id} owes ({balance}); "
            f"record at most {balance}.",
            errors=[{"field": "amount", "in": "body", "message": f"at most {balance}"}],
        )


class UnknownLoanOfMember(ProblemError):
    status, title, type = 422, "Unknown loan", "/problems/unknown-loan"
    code = "UNKNOWN_LOAN"

    def __init__(self, member_id: int, borrow_id: int) -> None:
        super().__init__(
            f"Member {member_id} has no borrow {borrow_id}.",
            errors=[{"field": "borrow_id", "in": "body", "message": "not this member's borrow"}],
        )


class ClosedDayExists(ProblemError):
    status, title, type = 409, "Day already closed", "/problems/closed-day-exists"
    code = "CLOSED_DAY_EXISTS"

    def __init__(self, day: date) -> None:
        super().__init__(f"{day:%Y-%m-%d} is a closed day already.")


class ClosedDayNotFound(ProblemError):
    status, title, type = 404, "Closed day not found", "/problems/closed-day-not-found"
    code = "CLOSED_DAY_NOT_FOUND"

    def __init__(self, day: date) -> None:
        super().__init__(f"{day:%Y-%m-%d} is not a closed day.")


class NoticesNotFound(ProblemError):
    status, title, type = 404, "Notice not found", "/problems/notice-not-found"
    code = "NOTICE_NOT_FOUND"

    def __init__(self, notice_ids: list[int]) -> None:
        super().__init__(f"No notice has id {', '.join(map(str, notice_ids))}.")


class HoldLimitReached(RuleRefusal, ProblemError):
    status, title, type = 409, "Hold limit reached", "/problems/hold-limit-reached"
    code = "HOLD_LIMIT_REACHED"

    def __init__(
        self, member_id: int, *, item_type: str, policy_id: int, limit: int, current: int
    ) -> None:
        super().__init__(
            f"Member {member_id} already has {current} open hold(s) on books of item type "
            f"{item_type!r} and policy {policy_id} allows {limit}; cancel one or collect a "
            "ready one first.",
            rule=Rule(name="max_holds", policy_id=policy_id, limit=limit, current=current),
        )


class HoldNotSuspendable(ProblemError):
    status, title, type = 409, "Hold not suspendable", "/problems/hold-not-suspendable"
    code = "HOLD_NOT_SUSPENDABLE"

    def __init__(self, hold_id: int, status: str) -> None:
        super().__init__(
            f"Hold {hold_id} is {status}; only a hold waiting in its book's queue can be "
            "suspended (a ready one is collected or cancelled)."
        )


class HoldNotSuspended(ProblemError):
    status, title, type = 409, "Hold not suspended", "/problems/hold-not-suspended"
    code = "HOLD_NOT_SUSPENDED"

    def __init__(self, hold_id: int, status: str) -> None:
        super().__init__(f"Hold {hold_id} is {status}; only a suspended hold can be resumed.")


class QueueChanged(ProblemError):
    """A reorder that does not name exactly the holds in the book's queue now: it was made
    from a view of the queue that is out of date."""

    status, title, type = 409, "Queue changed", "/problems/queue-changed"
    code = "QUEUE_CHANGED"

    def __init__(self, book_id: int, *, missing: list[int], unknown: list[int]) -> None:
        parts = []
        if missing:
            parts.append(f"holds {missing} are in the queue but not in the order sent")
        if unknown:
            parts.append(f"holds {unknown} are not in the queue (any more)")
        super().__init__(
            f"The queue of book {book_id} is not the one the order was made from: "
            f"{'; '.join(parts)}. GET /v1/holds/queues/{book_id} and send the whole queue.",
        )


class RepeatedHolds(ProblemError):
    status, title, type = 422, "Validation failed", VALIDATION_ERROR
    code = "VALIDATION_ERROR"

    def __init__(self, repeats: dict[int, int]) -> None:
        """`repeats`: index in `hold_ids` -> the repeated hold id."""
        errors = [
            {"field": f"hold_ids[{index}]", "in": "body", "message": f"hold {hold_id} twice"}
            for index, hold_id in repeats.items()
        ]
        super().__init__(validation_detail(errors), errors=errors)


class ResumeDateNotAhead(ProblemError):
    status, title, type = 422, "Validation failed", VALIDATION_ERROR
    code = "VALIDATION_ERROR"

    def __init__(self, today: date) -> None:
        errors = [
            {"field": "until", "in": "body", "message": f"must be after today ({today:%Y-%m-%d})"}
        ]
        super().__init__(validation_detail(errors), errors=errors)


class ClosingNotFound(ProblemError):
    status, title, type = 404, "Closing not found", "/problems/closing-not-found"
    code = "CLOSING_NOT_FOUND"

    def __init__(self, closing_id: int) -> None:
        super().__init__(f"Closing {closing_id} does not exist.")


class InvalidChange(ProblemError):
    """A change of the rules that cannot be made as asked: closing days in the past or
    out of order, a preview that proposes no change or two."""

    status, title, type = 422, "Invalid change", VALIDATION_ERROR
    code = VALIDATION_ERROR_CODE

    def __init__(self, detail: str, *, field: str, message: str) -> None:
        super().__init__(detail, errors=[{"field": field, "in": "body", "message": message}])
