"""The customer's plan (seed, phase 2b) as a minimal FastAPI service, for the auth benchmark.

/mqtt/auth/user: look the device up in SQLite, derive HMAC-SHA256(MQTT_SECRET, SN)[:32], compare.
/mqtt/auth/acl: the SN segment of the topic must equal the username.
Async handlers (no thread pool hop per request), as a FastAPI service tuned for speed is written;
the SQLite lookup is a primary-key read that does not block for long.
Run: MQTT_SECRET=... DB=devices.sqlite3 uvicorn fastapi_auth:app --port 8000 --workers N
(uvicorn[standard]: uvloop and httptools).
"""

import hashlib
import hmac
import os
import sqlite3
import threading

from fastapi import FastAPI, Response
from pydantic import BaseModel

SECRET = os.environ["MQTT_SECRET"].encode()
DB = os.environ.get("DB", "devices.sqlite3")
local = threading.local()
app = FastAPI()


def db():
    if not hasattr(local, "conn"):
        local.conn = sqlite3.connect(DB)
    return local.conn


class User(BaseModel):
    username: str
    password: str
    clientid: str = ""


class Acl(BaseModel):
    username: str
    topic: str
    clientid: str = ""
    acc: int


@app.post("/mqtt/auth/user")
async def user(body: User):
    row = db().execute("SELECT status FROM devices WHERE serial_number = ?", (body.username,)).fetchone()
    if row is None or row[0] == "revoked":
        return Response(status_code=403)
    expected = hmac.new(SECRET, body.username.encode(), hashlib.sha256).hexdigest()[:32]
    if not hmac.compare_digest(expected, body.password):
        return Response(status_code=403)
    return Response(status_code=200)


@app.post("/mqtt/auth/acl")
async def acl(body: Acl):
    parts = body.topic.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "vesper" and parts[1] == body.username:
        return Response(status_code=200)
    return Response(status_code=403)
