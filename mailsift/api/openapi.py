"""The OpenAPI 3.0 document of the API, written by hand (served at ``GET /openapi.json``).

It must describe the API exactly: ``tests/test_api_schemathesis.py`` sends requests
generated from it and checks every answer against it.

>>> doc = openapi_document()
>>> doc["openapi"], len(doc["paths"]), doc["components"]["securitySchemes"]["bearerAuth"]["scheme"]
('3.0.3', 10, 'bearer')
"""

from __future__ import annotations

import copy
from typing import Any

from mailsift.api.handlers import (
    DEFAULT_PAGE,
    DEFAULT_VERIFY_TIMEOUT,
    MAX_JOB_LIST,
    MAX_PAGE,
    MAX_VERIFY_TIMEOUT,
)
from mailsift.api.suppressions import MAX_ENTRIES
from mailsift.api.webhooks import MAX_URL_LENGTH
from mailsift.results import VERDICT_LIST
from mailsift.vocabulary import VOCABULARIES, words_of

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ref("Error")}}}


_ERRORS = {
    "400": _error("The body is not valid JSON."),
    "401": {**_error("No valid `Authorization: Bearer <token>`."),
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
    "403": _error("This needs an admin token (MAILSIFT_API_ADMIN_TOKENS)."),
    "404": _error("No such job, or not this token's."),
    "413": _error("The body is larger than MAILSIFT_API_MAX_BODY, or the job has more "
                  "addresses than MAILSIFT_API_JOB_MAX_ADDRESSES."),
    "415": _error("Unsupported Content-Type."),
    "422": _error("The request is well-formed but invalid (the message says why)."),
    "429": {**_error("Over the token's rate limit, or (`quota_exceeded`) its daily address "
                     "quota; retry after `Retry-After` seconds."),
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}},
    "503": _error("Kafka, Redis or Postgres did not answer; retry later."),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ERRORS[code] for code in codes}


_STR = {"type": "string"}
_EMAIL = {"type": "string", "minLength": 1,
          # not blank (the pipeline judges the rest: a non-address gets `syntax`)
          "pattern": "\\S",
          "description": "An address as given (`Name <addr>` is accepted), not blank. "
                         "Anything else that is no address (NUL, over 1,000 characters) "
                         "gets an `undeliverable`/`syntax` verdict."}
_NULLABLE_STR = {"type": "string", "nullable": True}
_JOB_STATES = {"type": "string", "enum": ["submitting", "running", "completed", "failed"],
               "description": "submitting: an upload's rows are being stored and produced; "
                              "failed: that stopped (see `error`); then the workers' running "
                              "and completed."}
_WAIT_FOR_BUDGET = {"type": "boolean", "default": True,
                    "description": "Past a domain's or MX host's daily probe budget, wait for "
                                   "the next UTC day (true), or end `unknown`/`probe_budget` "
                                   "at once (false)."}

_RESULT_ROW: dict[str, Any] = {
    "type": "object",
    "description": "One address's verdict: the columns of `mailsift results`. A row of a "
                   "list submitted through the API is one input row, in input order, with "
                   "`duplicate_of` (the line of its address's first row, or \"\"); a CSV "
                   "upload's own columns come first, and one of ours whose name the upload "
                   "has is given as `mailsift_<name>`, so no column is guaranteed here.",
    "properties": {
        "email": _STR,
        "normalized": _STR,
        "verdict": {"type": "string",
                    "enum": ["deliverable", "undeliverable", "risky", "unknown"]},
        "reason": _STR,
        "suggestion": _STR,
        "disposable": {"type": "boolean"},
        "role": {"type": "boolean"},
        "free": {"type": "boolean"},
        "catch_all": {"oneOf": [{"type": "boolean"}, {"type": "string", "enum": [""]}],
                      "description": "true/false, or \"\" when not probed."},
        "mx": {"type": "string", "description": "MX hosts, space-separated."},
        "spf": _NULLABLE_STR,
        "dmarc": _NULLABLE_STR,
        "dkim": _NULLABLE_STR,
        "smtp_code": {"oneOf": [{"type": "integer"}, {"type": "string", "enum": [""]}],
                      "description": "The SMTP reply code, or \"\" without an SMTP reply."},
        "smtp_message": _NULLABLE_STR,
        "checked_at": {"type": "string", "description": "ISO 8601 time of the check."},
        "duplicate_of": {"oneOf": [{"type": "integer"}, {"type": "string", "enum": [""]}],
                         "description": "A list submitted through the API: the line of the "
                                        "address's first row when this row repeats it."},
        # only with ?vocabulary= (the README's table maps each reason)
        "kickbox_result": {"type": "string", "enum": words_of("kickbox", "result"),
                           "description": "With vocabulary=kickbox: Kickbox's `result`."},
        "kickbox_reason": {"type": "string", "enum": words_of("kickbox", "reason"),
                           "description": "With vocabulary=kickbox: Kickbox's `reason`."},
        "kickbox_accept_all": {"type": "boolean",
                               "description": "With vocabulary=kickbox: Kickbox's "
                                              "`accept_all` (our catch_all is true)."},
        "zerobounce_status": {"type": "string", "enum": words_of("zerobounce", "status"),
                              "description": "With vocabulary=zerobounce: ZeroBounce's "
                                             "`status`."},
        "zerobounce_sub_status": {"type": "string",
                                  "enum": words_of("zerobounce", "sub_status"),
                                  "description": "With vocabulary=zerobounce: ZeroBounce's "
                                                 "`sub_status`."},
        "neverbounce_result": {"type": "string", "enum": words_of("neverbounce", "result"),
                               "description": "With vocabulary=neverbounce: NeverBounce's "
                                              "`result`."},
    },
}

_SCHEMAS: dict[str, Any] = {
    "Suppressions": {
        "type": "object", "required": ["entries", "count"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "entries": {"type": "array", "items": {
                "type": "object", "required": ["kind", "entry"],
                "properties": {"kind": {"type": "string", "enum": ["domain", "address"]},
                               "entry": _STR}}},
        },
    },
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code."},
                "message": {"type": "string", "description": "One line for humans."},
                "job_id": {"type": "string",
                           "description": "On a /v1/verify timeout: the job to poll."},
            }}},
    },
    "JobRequest": {
        "type": "object", "required": ["emails"], "additionalProperties": False,
        "properties": {
            "emails": {"type": "array", "minItems": 1, "items": _EMAIL},
            "webhook": {"type": "string", "maxLength": MAX_URL_LENGTH, "nullable": True,
                        "pattern": "^https?://",
                        "description": "http(s) URL POSTed the job summary on completion, "
                                       "signed with X-Mailsift-Signature. Private, loopback "
                                       "and link-local hosts are refused (422) unless "
                                       "allow-listed."},
            "wait_for_budget": _WAIT_FOR_BUDGET,
        },
    },
    "JobAccepted": {
        "type": "object", "required": ["job_id", "status", "total", "name"],
        "properties": {
            "job_id": _STR,
            "status": {"type": "string", "enum": ["submitting"]},
            "total": {"type": "integer", "minimum": 1, "nullable": True,
                      "description": "Rows with an address; null for a long upload, whose "
                                     "rows are counted while they are stored."},
            "name": _NULLABLE_STR},
    },
    "JobList": {
        "type": "object", "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "items": {
            "type": "object",
            "required": ["job_id", "total", "done", "created_at", "completed_at", "status",
                         "counts"],
            "properties": {
                "job_id": _STR,
                "name": _NULLABLE_STR,
                "total": {"type": "integer", "nullable": True},
                "done": {"type": "integer", "minimum": 0,
                         "description": "Submissions accounted for (as in GET "
                                        "/v1/jobs/{job_id})."},
                "created_at": _NULLABLE_STR,
                "completed_at": _NULLABLE_STR,
                "status": _JOB_STATES,
                "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                           "description": "Final verdicts so far, by verdict."},
            }}}},
    },
    "JobStatus": {
        "type": "object",
        "required": ["job_id", "status", "total", "done", "duplicates", "counts", "stored",
                     "submitted_at", "completed_at", "webhook"],
        "properties": {
            "job_id": _STR,
            "name": _NULLABLE_STR,
            "status": _JOB_STATES,
            "total": {"type": "integer", "nullable": True,
                      "description": "Submissions in the job (null until known)."},
            "rows_read": {"type": "integer", "minimum": 0,
                          "description": "An upload's rows stored so far (submitting)."},
            "submitted": {"type": "integer", "minimum": 0,
                          "description": "An upload's rows produced to Kafka so far."},
            "error": {"type": "string", "nullable": True,
                      "description": "Why a `failed` upload failed."},
            "reasons": {"type": "array", "items": {
                "type": "object", "required": ["reason", "count"],
                "properties": {"reason": _STR, "count": {"type": "integer", "minimum": 1}}},
                "description": "The most frequent reasons of the stored verdicts (10 at "
                               "most)."},
            "done": {"type": "integer", "description": "Submissions accounted for."},
            "duplicates": {"type": "integer"},
            "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "Unique addresses by verdict."},
            "stored": {"type": "integer", "description": "Verdict rows in Postgres."},
            "submitted_at": _NULLABLE_STR,
            "completed_at": _NULLABLE_STR,
            "webhook": {"type": "object", "allOf": [_ref("WebhookDelivery")],
                        "nullable": True,
                        "description": "The completion webhook (null: none was asked)."},
        },
    },
    "WebhookDelivery": {
        "type": "object",
        "required": ["delivery_id", "state", "attempts", "scheduled_at", "next_attempt_at",
                     "delivered_at", "log"],
        "properties": {
            "delivery_id": {"type": "string", "nullable": True,
                            "description": "`X-Mailsift-Delivery` of every attempt."},
            "state": {"type": "string",
                      "enum": ["waiting", "pending", "retrying", "delivered", "failed"],
                      "description": "waiting: the job has not completed yet; failed: "
                                     "given up after the last retry."},
            "attempts": {"type": "integer", "minimum": 0},
            "scheduled_at": _NULLABLE_STR,
            "next_attempt_at": _NULLABLE_STR,
            "delivered_at": _NULLABLE_STR,
            "log": {"type": "array", "items": {
                "type": "object", "required": ["attempt", "at", "outcome", "status", "state"],
                "properties": {
                    "attempt": {"type": "integer", "minimum": 1}, "at": _STR,
                    "outcome": _STR, "status": {"type": "integer", "nullable": True},
                    "state": _STR}}},
        },
    },
    "ResultRow": _RESULT_ROW,
    "ResultsPage": {
        "type": "object",
        "required": ["job_id", "offset", "limit", "total", "next_offset", "results"],
        "properties": {
            "job_id": _STR,
            "offset": {"type": "integer"},
            "limit": {"type": "integer"},
            "total": {"type": "integer", "description": "Verdict rows of the job."},
            "next_offset": {"type": "integer", "nullable": True,
                            "description": "The offset of the next page; null on the last."},
            "results": {"type": "array", "items": _ref("ResultRow")},
        },
    },
    "VerifyRequest": {
        "type": "object", "required": ["email"], "additionalProperties": False,
        "properties": {
            "email": _EMAIL,
            "timeout": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                        "maximum": MAX_VERIFY_TIMEOUT, "default": DEFAULT_VERIFY_TIMEOUT,
                        "description": "Seconds to wait for the verdict."},
        },
    },
    "VerifyResult": {
        "allOf": [_ref("ResultRow"), {
            "type": "object", "required": ["job_id", "temporary", "evidence"],
            "properties": {"job_id": _STR, "temporary": {"type": "boolean"},
                           "evidence": {"type": "object",
                                        "description": "The full evidence (see README)."}},
        }],
    },
    "Health": {
        "type": "object", "required": ["status", "services"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "services": {
                "type": "object", "required": ["kafka", "redis", "postgres"],
                "properties": {name: {"type": "string",
                                      "description": "\"ok\" or \"error: <kind>\""}
                               for name in ("kafka", "redis", "postgres")},
            },
        },
    },
}

_VOCABULARY = {"name": "vocabulary", "in": "query", "required": False,
               "schema": {"type": "string", "enum": list(VOCABULARIES), "default": "mailsift"},
               "description": "Also give each row a verifier's status words, as "
                              "`<vocabulary>_<field>` properties (mailsift: none)."}

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": _STR,
           "description": "The job id returned by POST /v1/jobs (or any mailsift job id)."}

_PATHS: dict[str, Any] = {
    "/v1/jobs": {"get": {
        "operationId": "listJobs",
        "summary": "The token's jobs (an admin token's: every job), newest first.",
        "parameters": [{"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_JOB_LIST,
                                   "default": 50}}],
        "responses": {
            "200": {"description": "The jobs stored in Postgres.",
                    "content": {"application/json": {"schema": _ref("JobList")}}},
            **_errors("401", "422", "429", "503"),
        },
    }, "post": {
        "operationId": "submitJob",
        "summary": "Submit a list of addresses as a job; answers at once.",
        "parameters": [
            {"name": "column", "in": "query", "required": False, "schema": _STR,
             "description": "CSV uploads: the column holding the address (matched in any "
                            "case). Without it, a header such as `email` or `E-mail`, else "
                            "the column whose values look like addresses, else a header-less "
                            "file."},
            {"name": "name", "in": "query", "required": False, "schema": _STR,
             "description": "A name for the job (the dashboard sends the file's name); "
                            "kept to 200 characters."},
            {"name": "webhook", "in": "query", "required": False, "schema": _STR,
             "description": "CSV uploads: the webhook URL (as `webhook` in JSON)."},
            {"name": "wait_for_budget", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["true", "false"], "default": "true"},
             "description": "As `wait_for_budget` in JSON (which wins when both are "
                            "given)."},
        ],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("JobRequest")},
            "text/csv": {"schema": {"type": "string"},
                         "description": "A CSV file (up to MAILSIFT_API_MAX_UPLOAD bytes), "
                                        "spooled to disk and answered 202 at once."},
            "text/plain": {"schema": {"type": "string"},
                           "description": "One address per line (blank lines and # "
                                          "comments are skipped)."},
        }},
        "responses": {
            "202": {"description": "Accepted; follow it with GET /v1/jobs/{job_id}.",
                    "headers": {"Location": {"schema": _STR}},
                    "content": {"application/json": {"schema": _ref("JobAccepted")}},
                    "links": {
                        "GetJob": {"operationId": "getJob",
                                   "parameters": {"job_id": "$response.body#/job_id"}},
                        "GetJobResults": {"operationId": "getJobResults",
                                          "parameters": {"job_id": "$response.body#/job_id"}},
                    }},
            **_errors("400", "401", "413", "415", "422", "429", "503"),
        },
    }},
    "/v1/jobs/{job_id}": {"get": {
        "operationId": "getJob",
        "summary": "A job's progress and counts by verdict.",
        "parameters": [_JOB_ID],
        "responses": {
            "200": {"description": "The job's status.",
                    "content": {"application/json": {"schema": _ref("JobStatus")}}},
            **_errors("401", "404", "422", "429", "503"),
        },
    }, "delete": {
        "operationId": "deleteJob",
        "summary": "Erase a job now: its verdicts, its bookkeeping, its webhook; replays "
                   "and rebuilds leave it out.",
        "parameters": [_JOB_ID],
        "responses": {
            "200": {"description": "The job is erased.",
                    "content": {"application/json": {"schema": {
                        "type": "object", "additionalProperties": False,
                        "required": ["job_id", "deleted", "verdicts", "redis_keys"],
                        "properties": {
                            "job_id": _STR, "deleted": {"type": "boolean"},
                            "verdicts": {"type": "integer", "minimum": 0,
                                         "description": "Verdict rows removed."},
                            "redis_keys": {"type": "integer", "minimum": 0}}}}}},
            **_errors("401", "404", "422", "429", "503"),
        },
    }},
    "/v1/jobs/{job_id}/results": {"get": {
        "operationId": "getJobResults",
        "summary": "A page of a job's results, streamed: a list submitted through the API "
                   "in its input order (every row, its own columns first), another job's "
                   "by address.",
        "parameters": [
            _JOB_ID,
            {"name": "format", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["json", "csv", "ndjson"],
                        "default": "json"}},
            {"name": "offset", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0}},
            {"name": "limit", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                        "default": DEFAULT_PAGE},
             "description": "Rows in the page (with download=true and no limit: all)."},
            _VOCABULARY,
            {"name": "verdict", "in": "query", "required": False,
             "schema": {"type": "string", "pattern": VERDICT_LIST},
             "description": "Only the rows of these verdicts: a comma list, e.g. "
                            "`deliverable,risky`."},
            {"name": "download", "in": "query", "required": False,
             "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
             "description": "An attachment (Content-Disposition with a file name) of every "
                            "row unless a limit is given."},
        ],
        "responses": {
            "200": {
                "description": "The page; csv has a header row, ndjson one object a line.",
                "headers": {
                    "X-Total-Count": {"schema": {"type": "integer"},
                                      "description": "Result rows of the job (of the "
                                                     "verdicts asked for)."},
                    "X-Next-Offset": {"schema": {"type": "integer"},
                                      "description": "The next page's offset, if any."},
                },
                "content": {
                    "application/json": {"schema": _ref("ResultsPage")},
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            },
            **_errors("401", "404", "422", "429", "503"),
        },
    }},
    "/v1/verify": {"post": {
        "operationId": "verifyAddress",
        "summary": "Verify one address through the pipeline and wait for its verdict.",
        "parameters": [_VOCABULARY],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("VerifyRequest")}}},
        "responses": {
            "200": {"description": "The verdict.",
                    "content": {"application/json": {"schema": _ref("VerifyResult")}}},
            **_errors("400", "401", "413", "415", "422", "429", "503"),
            "504": _error("No verdict within the timeout; `error.job_id` is the job to poll."),
        },
    }},
    "/v1/suppressions": {
        "get": {
            "operationId": "listSuppressions",
            "summary": "The suppression list: domains (and every name under them) and "
                       "addresses never probed.",
            "responses": {
                "200": {"description": "Every entry.",
                        "content": {"application/json": {"schema": _ref("Suppressions")}}},
                **_errors("401", "403", "422", "429", "503"),
            },
        },
        "post": {
            "operationId": "addSuppressions",
            "summary": "Put domains or addresses on the suppression list (all or none).",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["entries"], "additionalProperties": False,
                "properties": {"entries": {
                    "type": "array", "minItems": 1, "maxItems": MAX_ENTRIES,
                    "items": {"type": "string", "minLength": 1},
                    "description": "Domains (`example.com`) or addresses; one that is "
                                   "neither is a 422 and nothing is added."}}}}}},
            "responses": {
                "200": {"description": "How many were new.",
                        "content": {"application/json": {"schema": {
                            "type": "object", "required": ["added", "already"],
                            "properties": {"added": {"type": "integer", "minimum": 0},
                                           "already": {"type": "integer", "minimum": 0}}}}}},
                **_errors("400", "401", "403", "413", "415", "422", "429", "503"),
            },
        },
    },
    "/v1/suppressions/{entry}": {"delete": {
        "operationId": "removeSuppression",
        "summary": "Take one domain or address off the suppression list.",
        "parameters": [{"name": "entry", "in": "path", "required": True, "schema": _STR,
                        "description": "A domain or an address, as it was added."}],
        "responses": {
            "200": {"description": "It is off the list.",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["removed"],
                        "properties": {"removed": _STR}}}}},
            **_errors("401", "403", "404", "422", "429", "503"),
        },
    }},
    "/healthz": {"get": {
        "operationId": "liveness",
        "summary": "Liveness: the API serves (no token needed).",
        "security": [],
        "responses": {
            "200": {"description": "It serves.",
                    "content": {"application/json": {"schema": {
                        "type": "object", "required": ["status"],
                        "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}},
        },
    }},
    "/readyz": {"get": {
        "operationId": "readiness",
        "summary": "Whether Kafka, Redis and Postgres answer (no token needed).",
        "security": [],
        "responses": {
            "200": {"description": "All answer.",
                    "content": {"application/json": {"schema": _ref("Health")}}},
            "503": {"description": "At least one does not.",
                    "content": {"application/json": {"schema": _ref("Health")}}},
        },
    }},
    "/metrics": {"get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics.",
        "responses": {
            "200": {"description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors("401", "429"),
        },
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi",
        "summary": "This document (no token needed).",
        "security": [],
        "responses": {"200": {"description": "OpenAPI 3.0 document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "mailsift API",
        "version": "1",
        "description": "Email-list verification: submit jobs, follow them, read their "
                       "verdicts. Errors are `{\"error\": {\"code\", \"message\"}}`.",
    },
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "A token of MAILSIFT_API_TOKENS."}},
        "schemas": _SCHEMAS,
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document."""
    return copy.deepcopy(_DOCUMENT)
