"""Every kind of personal data and secret that masking covers, in the form it must take:
one table for the unit tests of :mod:`trilha.observability.masking` and for the sink
tests that check the same kinds never reach a stored trail or a process log."""

from __future__ import annotations

from trilha.observability.masking import MASK

#: (text, masked text): each kind in its usual spellings, formatted and bare
MASKED = [
    # e-mails: first letter and top-level domain stay
    ("joao@example.com", "j***@***.com"),
    ("Maria.Silva+sac@empresa.com.br", "M***@***.br"),
    ("5511987654321@s.whatsapp.net", "5***@***.net"),
    ("escreva para ana@x.io.", "escreva para a***@***.io."),
    # phones: the last two digits stay, separators stay
    ("+55 11 98765-4321", "+** ** *****-**21"),
    ("(11) 98765-4321", "(**) *****-**21"),
    ("(11) 3456-7890", "(**) ****-**90"),
    ("11 98765-4321", "** *****-**21"),
    ("11987654321", "*********21"),
    ("+5511987654321", "+***********21"),
    ("+1 415 555 0100", "+* *** *** **00"),
    ("+44 (20) 7946 0958", "+** (**) **** **58"),
    ("tel. 98765-4321", "tel. *****-**21"),
    # CPF and CNPJ: nothing stays
    ("123.456.789-09", "***.***.***-**"),
    ("123456789-09", "*********-**"),
    ("12345678909", "***********"),
    ("12.345.678/0001-95", "**.***.***/****-**"),
    ("12345678000195", "**************"),
    # ...also glued to another number by a slash, and a CNPJ's slash percent-encoded in a URL
    ("123.456.789-09/12345678909", "***.***.***-**/***********"),
    ("/c/12.345.678%2F0001-95", "/c/**.***.***%*F****-**"),
    # cards (Luhn-valid): the last four stay
    ("4111 1111 1111 1111", "**** **** **** 1111"),
    ("4111-1111-1111-1111", "****-****-****-1111"),
    ("4111111111111111", "************1111"),
    ("3782 822463 10005", "**** ****** *0005"),
    ("5555555555554444", "************4444"),
    # secrets: the marker replaces the value, the name and scheme stay
    ("Authorization: Bearer abc.DEF-123_xyz", "Authorization: Bearer [masked]"),
    ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic [masked]"),
    ("Bearer 0123456789abcdef", "Bearer [masked]"),
    ("token=abc123&page=2", "token=[masked]&page=2"),
    ("access_token=abc123", "access_token=[masked]"),
    ("api_key: zzz", "api_key: [masked]"),
    ("apikey=zzz", "apikey=[masked]"),
    ("password=hunter2", "password=[masked]"),
    ("senha: 1234", "senha: [masked]"),
    ("senha=coração1 ok", "senha=[masked] ok"),
    ("secret = s3cr3t;", "secret = [masked];"),
    ('{"password": "hunter 2", "x": 1}', '{"password": "[masked]", "x": 1}'),
    ("{'client_secret': 'abc'}", "{'client_secret': '[masked]'}"),
    ("https://u:pass@api.example.com/x", "https://u:p***@***.com/x"),
    (
        "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpM",
        f"jwt {MASK}",
    ),
]
