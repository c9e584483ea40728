"""Person names in running text, without a language model: the given and family names that
Faker (a maintained package) ships for its 86 locales, about 31,000 given names, its place
names, honorifics and capitalisation. The machines this project builds on reach PyPI but no
model hub, where spaCy's and Presidio's NER models live. So this finds "Margaret Hale",
"Dr. Okonkwo" and "ask for Luis", but not a name that is in no list and has no title
("Tanaka Hiroshi"), and it takes some capitalised words for names ("Wells Fargo"); its
precision and recall on the labelled sample are printed by `make bench`. No Django.
"""

import functools
import importlib
import pkgutil
import re
from collections.abc import Iterator

import faker.providers.address as faker_places
import faker.providers.lorem.en_US as faker_words
import faker.providers.person as faker_people

# A word: letters, with inner apostrophes or hyphens ("O'Connell", "Al-Sayed", "Hans-Peter").
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['’]s$")


def _words(spaced: str) -> frozenset[str]:
    return frozenset(spaced.split())


TITLES = _words(
    "Mr Mrs Ms Miss Mx Dr Prof Sir Dame Lady Lord Herr Herrn Frau Mme Mlle Monsieur Madame "
    "Señor Señora Sr Sra Dona Signor Signora Pan Pani"
)
# Lower-case words that join the parts of one name ("Ludwig van Beethoven", "Daan de Vries").
PARTICLES = _words("van von der den de del della di da dos das du le la ter ten bin ibn")
# Words that are capitalised for other reasons: sentence openers, days, months, roles, and
# German's polite "Sie", "Ihnen", "Ihr".
_FUNCTION_WORDS = _words(
    """i you he she it we they me him her us them my your his its our their this that these
    those a an the and or but nor if then so as at by for from in into of on onto to with
    without about after before over under up down out off is are was were be been am do does
    did have has had can could will would shall should may might must not no yes please
    dear hi hello hey thanks thank what who whom whose which where when why how all any each
    every some one two three monday tuesday wednesday thursday friday saturday sunday
    january february march april june july august september october november december
    human assistant user system bot ai god sie ihnen ihr ihre"""
)
# Last words that make a capitalised run a place, a building or an organisation.
_NOT_PERSON_HEADS = _words(
    """street road avenue lane square park bridge tower house hall building centre center
    river lake mountain mountains island islands bay beach valley canyon gate falls opera
    university college school institute hospital church cathedral museum airport station
    bank company group inc ltd llc gmbh corporation foundation council court act day eve
    city county state states kingdom republic union nations party club team hills"""
)
# First words of place names ("San Francisco", "New York", "Fort Worth").
_PLACE_OPENERS = _words("San Santa Santo São Los Las El New Saint St Fort Port Mount")
# A lone given name after these is a place more often than a person ("in Paris", "central
# London"); "ask for Luis" and "with Priya" stay names.
_PLACE_CUES = _words("in at near from of central downtown visit visiting across around")


@functools.cache
def _lists() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """(given names, family names, words capitalised for other reasons, places), read once."""
    given: set[str] = set()
    family: set[str] = set()
    for module in pkgutil.iter_modules(faker_people.__path__):
        provider = importlib.import_module(f"{faker_people.__name__}.{module.name}").Provider
        for attribute, into in (
            ("first_names", given),
            ("first_names_male", given),
            ("first_names_female", given),
            ("last_names", family),
        ):
            # Some locales build names through a property; only literal lists are name lists.
            names = vars(provider).get(attribute)
            if isinstance(names, list | tuple | dict):
                into.update(n for n in names if n[:1].isupper())
    places: set[str] = set()
    for module in pkgutil.iter_modules(faker_places.__path__):
        provider = importlib.import_module(f"{faker_places.__name__}.{module.name}").Provider
        for attribute in ("countries", "states", "provinces", "regions", "cities"):
            names = vars(provider).get(attribute)
            if isinstance(names, list | tuple):
                places.update(n for n in names if isinstance(n, str))
    common = set(_FUNCTION_WORDS) | {w.lower() for w in faker_words.Provider.word_list}
    return frozenset(given), frozenset(family), frozenset(common), frozenset(places)


def _capitalised(word: str) -> bool:
    # "ISO", "GPS" and "I" are not names; "O'Connell" and "McDonald" are.
    return word[:1].isupper() and not word.isupper()


def _sentence_start(text: str, start: int) -> bool:
    before = text[max(0, start - 8) : start].rstrip()
    return not before or before[-1] in '.!?:;"“(\n'


def _runs(text: str) -> Iterator[list[tuple[int, int, str]]]:
    """Runs of capitalised words (with particles between them) joined by single spaces; a
    title may be followed by a full stop ("Dr. Kevin Osei")."""
    run: list[tuple[int, int, str]] = []
    for match in _WORD.finditer(text):
        word = _POSSESSIVE.sub("", match.group())
        if not (_capitalised(word) or word in PARTICLES):
            if run:
                yield run
            run = []
            continue
        if run:
            gap = text[run[-1][1] : match.start()]
            joined = gap == " " or (gap == ". " and run[-1][2] in TITLES)
            if not joined:
                yield run
                run = []
        if run or _capitalised(word):
            run.append((match.start(), match.start() + len(word), word))
    if run:
        yield run


def find_person_names(text: str) -> Iterator[tuple[int, int]]:
    """Spans of person names: a run of capitalised words that opens with a known given name
    ("Margaret Hale") or follows a title ("Dr. Okonkwo"), or two or more words ending in a
    known family name ("Chinedu Okafor"). Words that are capitalised for other reasons
    split a run ("Will You Marry Me"); a given name that is also a common word ("Will",
    "Grace") needs a second part; a lone given name counts only inside a sentence and not
    after "in", "at", "from"... A run that is a known place, opens like one ("San", "New")
    or ends in a place or organisation word ("Opera House", "Bank") is not a person."""
    given, _, common, places = _lists()
    for run in _runs(text):
        if (
            run[-1][2].lower() in _NOT_PERSON_HEADS
            or run[0][2] in _PLACE_OPENERS
            or text[run[0][0] : run[-1][1]] in places
        ):
            continue
        part: list[tuple[int, int, str]] = []
        titled = False
        for token in [*run, None]:
            if token is not None and token[2] in TITLES:
                yield from _name(part, text, titled=False)
                part, titled = [], True
            elif token is not None and (token[2] in given or token[2].lower() not in common):
                part.append(token)
            else:
                yield from _name(part, text, titled=titled)
                part, titled = [], False


def _name(
    part: list[tuple[int, int, str]], text: str, *, titled: bool
) -> Iterator[tuple[int, int]]:
    """The span of `part` (consecutive words of one run) if it is a person's name."""
    given, family, common, places = _lists()
    while part and part[-1][2] in PARTICLES:
        part = part[:-1]
    if not part:
        return
    words = [w for _, _, w in part]
    if titled:
        found = True
    elif len(words) > 1:
        found = words[0].split("-")[0] in given or words[-1] in family
    else:
        before = text[max(0, part[0][0] - 16) : part[0][0]].split()
        found = (
            words[0].split("-")[0] in given
            and words[0].lower() not in common
            and words[0] not in places
            and not _sentence_start(text, part[0][0])
            and not (before and before[-1].lower() in _PLACE_CUES)
        )
    if found:
        yield part[0][0], part[-1][1]
