"""The rows the handlers read, typed."""

from datetime import datetime

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
