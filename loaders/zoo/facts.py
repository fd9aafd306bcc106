"""Fact tables and templates behind the bundled corpus.

Every relation is a table of (subject, answer) pairs plus templates that render one pair as
one line of text. Templates are of two kinds:

- *statements* teach the fact ("Grass is green.");
- *questions* are a prompt and an answer, rendered as ``prompt + " " + answer``, so that the
  prompt alone is a prefix a model can be asked to complete (``What is the color of grass?
  Answer in one word within <answer></answer>`` → ``<answer>green</answer>``).

Question templates are split in the corpus builder: some are held out entirely, and some
(subject, template) pairs of the others are held out, so evaluation measures whether the
model answers questions it never saw, about facts it learned from other sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

ANSWER_SUFFIX = "Answer in one word within <answer></answer>"


def tagged(answer: str) -> str:
    """The answer as the tagged form the `<answer></answer>` questions expect."""
    return f"<answer>{answer}</answer>"


@dataclass(frozen=True)
class Question:
    """A question template: `prompt` and `answer` are format strings over {s} and {a}."""

    name: str
    prompt: str
    answer: str

    def render(self, relation: str, subject: str, answer: str) -> tuple[str, str]:
        """(prompt, answer) for one fact of `relation`."""
        return render(self.prompt, relation, subject, answer), render(self.answer, relation, subject, answer)


@dataclass(frozen=True)
class Relation:
    """One relation: its fact table, statement templates and question templates."""

    name: str
    facts: tuple[tuple[str, str], ...]
    statements: tuple[str, ...]
    questions: tuple[Question, ...]
    held_out_questions: tuple[Question, ...]


OBJECT_COLORS: tuple[tuple[str, str], ...] = (
    ("grass", "green"),
    ("a leaf", "green"),
    ("a frog", "green"),
    ("a cucumber", "green"),
    ("broccoli", "green"),
    ("spinach", "green"),
    ("an emerald", "green"),
    ("moss", "green"),
    ("a pea", "green"),
    ("lettuce", "green"),
    ("jade", "green"),
    ("a pickle", "green"),
    ("the sky", "blue"),
    ("the ocean", "blue"),
    ("a sapphire", "blue"),
    ("a blueberry", "blue"),
    ("the sea", "blue"),
    ("denim", "blue"),
    ("a bluebird", "blue"),
    ("a cornflower", "blue"),
    ("blood", "red"),
    ("a tomato", "red"),
    ("a strawberry", "red"),
    ("a ruby", "red"),
    ("a cherry", "red"),
    ("a fire truck", "red"),
    ("a rose", "red"),
    ("a ladybug", "red"),
    ("a banana", "yellow"),
    ("a lemon", "yellow"),
    ("the sun", "yellow"),
    ("corn", "yellow"),
    ("butter", "yellow"),
    ("a canary", "yellow"),
    ("an egg yolk", "yellow"),
    ("a sunflower", "yellow"),
    ("snow", "white"),
    ("milk", "white"),
    ("a cloud", "white"),
    ("salt", "white"),
    ("cotton", "white"),
    ("chalk", "white"),
    ("sugar", "white"),
    ("a swan", "white"),
    ("coal", "black"),
    ("the night", "black"),
    ("a crow", "black"),
    ("ink", "black"),
    ("tar", "black"),
    ("a raven", "black"),
    ("an orange", "orange"),
    ("a carrot", "orange"),
    ("a pumpkin", "orange"),
    ("a tangerine", "orange"),
    ("an apricot", "orange"),
    ("a grape", "purple"),
    ("an eggplant", "purple"),
    ("a plum", "purple"),
    ("lavender", "purple"),
    ("an amethyst", "purple"),
    ("chocolate", "brown"),
    ("coffee", "brown"),
    ("soil", "brown"),
    ("tree bark", "brown"),
    ("a walnut", "brown"),
    ("a flamingo", "pink"),
    ("bubblegum", "pink"),
    ("a piglet", "pink"),
    ("cotton candy", "pink"),
    ("an elephant", "gray"),
    ("ash", "gray"),
    ("smoke", "gray"),
    ("concrete", "gray"),
    ("a mouse", "gray"),
)

COLOR_HEX: tuple[tuple[str, str], ...] = (
    ("red", "FF0000"),
    ("green", "00FF00"),
    ("blue", "0000FF"),
    ("yellow", "FFFF00"),
    ("cyan", "00FFFF"),
    ("magenta", "FF00FF"),
    ("white", "FFFFFF"),
    ("black", "000000"),
    ("gray", "808080"),
    ("orange", "FFA500"),
    ("purple", "800080"),
    ("pink", "FFC0CB"),
    ("brown", "A52A2A"),
    ("navy", "000080"),
    ("maroon", "800000"),
    ("olive", "808000"),
    ("teal", "008080"),
    ("silver", "C0C0C0"),
    ("gold", "FFD700"),
    ("violet", "EE82EE"),
    ("indigo", "4B0082"),
    ("coral", "FF7F50"),
    ("salmon", "FA8072"),
    ("beige", "F5F5DC"),
    ("ivory", "FFFFF0"),
    ("khaki", "F0E68C"),
    ("crimson", "DC143C"),
    ("turquoise", "40E0D0"),
    ("lavender", "E6E6FA"),
    ("tan", "D2B48C"),
    ("chocolate", "D2691E"),
    ("orchid", "DA70D6"),
)

LANGUAGES: tuple[str, ...] = ("French", "German", "Spanish", "Italian", "Dutch")
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    # english: (french, german, spanish, italian, dutch)
    "red": ("rouge", "rot", "rojo", "rosso", "rood"),
    "green": ("vert", "grün", "verde", "verde", "groen"),
    "blue": ("bleu", "blau", "azul", "blu", "blauw"),
    "yellow": ("jaune", "gelb", "amarillo", "giallo", "geel"),
    "white": ("blanc", "weiß", "blanco", "bianco", "wit"),
    "black": ("noir", "schwarz", "negro", "nero", "zwart"),
    "orange": ("orange", "orange", "naranja", "arancione", "oranje"),
    "purple": ("violet", "lila", "morado", "viola", "paars"),
    "brown": ("marron", "braun", "marrón", "marrone", "bruin"),
    "pink": ("rose", "rosa", "rosa", "rosa", "roze"),
    "gray": ("gris", "grau", "gris", "grigio", "grijs"),
}

CAPITALS: tuple[tuple[str, str], ...] = (
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Brazil", "Brasilia"),
    ("Mexico", "Mexico City"),
    ("India", "Delhi"),
    ("Kenya", "Nairobi"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Argentina", "Buenos Aires"),
    ("Turkey", "Ankara"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("Cuba", "Havana"),
    ("Hungary", "Budapest"),
    ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"),
    ("Korea", "Seoul"),
)

OPPOSITES: tuple[tuple[str, str], ...] = (
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("left", "right"),
    ("happy", "sad"),
    ("light", "dark"),
    ("open", "closed"),
    ("early", "late"),
    ("full", "empty"),
    ("hard", "soft"),
    ("high", "low"),
    ("old", "new"),
    ("rich", "poor"),
    ("strong", "weak"),
    ("wet", "dry"),
    ("thick", "thin"),
    ("loud", "quiet"),
    ("true", "false"),
    ("long", "short"),
    ("heavy", "light"),
    ("clean", "dirty"),
    ("inside", "outside"),
    ("first", "last"),
    ("good", "bad"),
    ("day", "night"),
    ("win", "lose"),
    ("push", "pull"),
    ("begin", "end"),
    ("before", "after"),
)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _q(name: str, prompt: str, answer: str = "{a}") -> Question:
    return Question(name, prompt, answer)


def _tagged_q(name: str, prompt: str) -> Question:
    return Question(name, f"{prompt} {ANSWER_SUFFIX}", tagged("{a}"))


def relations() -> tuple[Relation, ...]:
    """All relations of the corpus, in a fixed order."""
    translate = tuple(
        (f"{english}|{language}", word)
        for english, words in COLOR_WORDS.items()
        for language, word in zip(LANGUAGES, words, strict=True)
    )
    return (
        Relation(
            name="color",
            facts=OBJECT_COLORS,
            statements=(
                "The color of {s} is {a}.",
                "{S} is {a}.",
                "{S} has a {a} color.",
                "If you look at {s}, you see the color {a}.",
                "Everyone knows that {s} is {a}.",
                "I painted {s} in its natural color: {a}.",
            ),
            questions=(
                _tagged_q("what-is-the-color", "What is the color of {s}?"),
                _tagged_q("what-color-is", "What color is {s}?"),
                _q("qa", "Q: What color is {s}? A:"),
                _q("colour", "Question: what is the colour of {s}? Answer:"),
                _tagged_q("name-the-color", "Name the color of {s}."),
                _q("does-have", "Which color does {s} have? Answer:"),
                _tagged_q("what-colour-is", "What colour is {s}?"),
                _q("one-word", "In one word, the color of {s} is"),
                _q("tell-what", "Q: Tell me what color {s} is. A:"),
            ),
            held_out_questions=(
                _tagged_q("tell-me", "Tell me the color of {s}."),
                _q("which-color", "Which color is {s}? Answer:"),
            ),
        ),
        Relation(
            name="hex",
            facts=COLOR_HEX,
            statements=(
                "The hex value of {s} is {a}.",
                "The hex code for {s} is #{a}.",
                ".{s} {{ color: #{lower}; }}",
                '{UPPER} = "#{a}"',
                'color = "{s}"  # #{a}',
                "In CSS, {s} is written as #{a}.",
            ),
            questions=(
                _q("what-is-the-hex", "What is the hex value of {s}?"),
                _tagged_q("tell-me-the-hex", "Tell me the hex value of {s}."),
                _q("qa", "Q: What is the hex code of {s}? A:"),
                _q("rgb", "Question: what is the RGB hex of {s}? Answer:"),
                _tagged_q("hex-code-for", "What is the hex code for {s}?"),
                _q("does-have", "Which hex code does {s} have? Answer:"),
                _tagged_q("write-as-hex", "Write {s} as a hex color."),
                _q("colon", "Hex value of {s}:"),
                _q("tell-what", "Q: Tell me the hex value of {s}. A:"),
            ),
            held_out_questions=(
                _tagged_q("give-the-hex", "Give the hex code for {s}."),
                _q("which-hex", "Which hex value is {s}? Answer:"),
            ),
        ),
        Relation(
            name="translate",
            facts=translate,
            statements=(
                "The {L} word for {e} is {a}.",
                "{e} in {L} is {a}.",
                'translations["{e}"]["{l2}"] = "{a}"',
                "In {L}, the color {e} is called {a}.",
            ),
            questions=(
                _tagged_q("how-do-you-say", "How do you say {e} in {L}?"),
                _q("qa", "Q: What is {e} in {L}? A:"),
                _tagged_q("word-for", "What is the {L} word for {e}?"),
                _q("called", "In {L}, {e} is called"),
            ),
            held_out_questions=(_tagged_q("translate", "Translate {e} into {L}."),),
        ),
        Relation(
            name="capital",
            facts=CAPITALS,
            statements=(
                "The capital of {s} is {a}.",
                "{a} is the capital of {s}.",
                "{s}'s capital city is {a}.",
            ),
            questions=(
                _tagged_q("what-is-the-capital", "What is the capital of {s}?"),
                _q("qa", "Q: What is the capital of {s}? A:"),
                _tagged_q("which-city", "Which city is the capital of {s}?"),
                _q("capital-colon", "Capital of {s}:"),
            ),
            held_out_questions=(_tagged_q("name-the-capital", "Name the capital of {s}."),),
        ),
        Relation(
            name="opposite",
            facts=OPPOSITES,
            statements=(
                "The opposite of {s} is {a}.",
                "{S} is the opposite of {a}.",
                "{s} and {a} are opposites.",
            ),
            questions=(
                _tagged_q("what-is-the-opposite", "What is the opposite of {s}?"),
                _q("qa", "Q: What is the opposite of {s}? A:"),
                _tagged_q("antonym-of", "What is an antonym of {s}?"),
                _q("opposite-colon", "Opposite of {s}:"),
            ),
            held_out_questions=(_tagged_q("antonym", "Give the antonym of {s}."),),
        ),
    )


def fields(relation: str, subject: str, answer: str) -> dict[str, str]:
    """The format fields a template of `relation` may use for one fact."""
    out = {"s": subject, "S": _cap(subject), "a": answer}
    if relation == "hex":
        out |= {"lower": answer.lower(), "UPPER": subject.upper()}
    if relation == "translate":
        english, language = subject.split("|")
        out |= {"e": english, "L": language, "l2": language[:2].lower()}
    return out


def render(template: str, relation: str, subject: str, answer: str) -> str:
    return template.format(**fields(relation, subject, answer))
