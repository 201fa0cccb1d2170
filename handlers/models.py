"""The rows the handlers read and the payloads of the events they handle, typed."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from cdc import Row


class User(Row):
    id: int
    handle: str
    email: str
    created_at: datetime


class Post(Row):
    id: int
    author_id: int
    title: str


class Comment(Row):
    id: int
    post_id: int
    author_id: int
    body: str


class Vote(Row):
    post_id: int
    voter_id: int
    value: int


# Payloads of the post workflow's domain events (handlers/moderation.py).
class PostSubmitted(BaseModel):
    post_id: int
    author_id: int
    title: str


class PostReviewed(PostSubmitted):
    verdict: Literal["approved", "rejected", "held"]  # held: for a moderator to decide
    reason: str | None = None


class PostPublished(PostSubmitted):
    published_at: datetime
