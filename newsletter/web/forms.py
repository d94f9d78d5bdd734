"""Form text as it was typed: a browser's CRLF and lone CR line breaks read as LF, before any check.

Browsers send every line break in a textarea as CRLF (both form encodings require it), and
the checks behind the forms refuse U+000D as a control character, so without this no letter
of more than one line could be written in the browser.

Why a form reader and not an ASGI middleware rewriting request bodies: every textarea is on an
admin page, and every admin form is read through `web/admin/common.form_of`, which each handler
must call anyway for its CSRF check, so normalising there is one place by construction. It
works on the values Starlette's own parser decoded, so there is no second parser of
urlencoded or multipart bytes to disagree with Starlette's (percent escapes in either case,
`+` for a space, part boundaries split across network chunks), the body is still read once
under `web/security.py`'s BODY_LIMITS exactly as before (nothing here counts or buffers bytes),
and Content-Length stays true. Public forms have one-line `<input>`s only, from which browsers
strip line breaks: a CR there is a control character, refused by that field's own rule.

Uploaded files (the CSV import) pass through byte for byte: the import reads them with the csv
module, which takes CRLF, LF and CR line ends itself, and a line break inside a quoted cell
belongs to the file. The JSON API is not a browser, but its one multi-line text (a broadcast's
`body_md`) takes the same rule through `Text`, so a letter written on Windows and posted by a
script is not refused either. A password is compared exactly as it was sent (VERBATIM): a
browser's password box holds no line breaks, and the login's rules stay its own.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from starlette.datastructures import FormData

# Fields kept exactly as sent: secrets compared byte for byte.
VERBATIM = frozenset({"password"})


def line_breaks(text: str) -> str:
    """`text` with every CRLF and every lone CR as LF; nothing else changes."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalised(form: FormData) -> FormData:
    """The form with `line_breaks` applied to every text value but VERBATIM's; uploaded files
    untouched."""
    return FormData(
        [
            (key, line_breaks(value) if isinstance(value, str) and key not in VERBATIM else value)
            for key, value in form.multi_items()
        ]
    )


# A multi-line text field of a JSON body, read with a browser's line breaks as LF.
Text = Annotated[str, AfterValidator(line_breaks)]
