"""What of a growing completion may be shown yet: the output side of the content filter, per choice.

Streaming sends text as it is generated, but a filter can only judge whole words, so with `mode: block` the text
after the last whitespace is held back until the word is complete (or the completion ends): a flagged word or an
e-mail address is never half sent. With `mode: log` (or off) everything goes out at once and the finished text is
checked once, for the counters.
"""

from __future__ import annotations

from .content_filter import ContentFilter


class OutputGate:
    def __init__(self, content_filter: ContentFilter):
        self.filter = content_filter
        self.blocking = content_filter.applies("output") and content_filter.spec.mode == "block"
        self.sent = 0  # characters of the text already released
        self.blocked = False

    def release(self, text: str, finished: bool) -> str:
        """The next piece of `text` (the cumulative completion) that may be sent; sets `blocked` when the filter
        refuses it (nothing more is released then)."""
        if self.blocked:
            return ""
        if self.blocking and self.filter.flags(text):
            self.filter.check(text, "output")  # counts it once
            self.blocked = True
            return ""
        if finished:
            if not self.blocking:
                self.filter.check(text, "output")
            piece, self.sent = text[self.sent :], len(text)
            return piece
        end = len(text)
        if self.blocking:
            end = max((text.rfind(c) for c in " \n\t"), default=-1) + 1
            end = max(end, self.sent)
        piece, self.sent = text[self.sent : end], end
        return piece

    def final(self, text: str) -> tuple[str, bool]:
        """(text to return, blocked) for a whole completion at once (non-streaming)."""
        verdict = self.filter.check(text, "output")
        return (self.filter.refusal, True) if verdict.blocked else (text, False)
