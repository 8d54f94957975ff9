"""Generic English word lists for the near-miss verifier: function words, negators, numbers, antonyms, synonyms.

Written from general linguistic knowledge, not from any evaluation set, so that the verifier generalizes to
questions it has never seen. Entity classes (languages, currencies, places, units...) live in lexicon_entities.
"""

from __future__ import annotations

# Words that carry no topic: articles, pronouns, auxiliaries, prepositions, question words.
STOPWORDS: frozenset[str] = frozenset("""
a an the this that these those there here it its it's itself i me my mine myself we us our ours you your yours
yourself he him his she her hers they them their theirs one's someone somebody something anyone anybody anything
everyone everything
is am are was were be been being do does did done doing have has had having will would shall should can could
may might must ought wo ca
what whats what's which who whom whose when where why how whats hows whether if then than so as
of in on at by for with about into onto from to up out over under off via per within upon along across through
and or but also too either both each every any some such other another own same very much many more lot lots
just only even still already yet again ever really quite rather pretty enough
please thanks thank hi hello hey ok okay
s t d ll re ve m
""".split())

# Words that change how a question is asked, not what it asks: fillers, evaluatives, generic request verbs.
FILLERS: frozenset[str] = frozenset("""
tell explain show give know want need like let help suggest recommend advise advice tip tips idea ideas
way ways thing things stuff method approach guide tutorial example examples sample instance question answer
good great best better nice cool cute fun funny simple simplest easy easiest easily quick quickly clean cleanest
proper properly correct correctly right exactly actually basically simply really certain given particular
specific specifically generally usually typically possible possibly probably maybe kind sort type bit little
fine okay interesting effective efficient efficiently
find get got getting calculate compute computing figure determine tell say said mean means
please someone somebody anyone u ur im ive id dont
general common basic typical usual normal standard real actual
step steps detail details info information
""".split())

# Question words themselves are stopwords; these verbs of asking are fillers too when they open a question.
NEGATORS: frozenset[str] = frozenset(
    "not no never without cannot cant dont doesnt didnt isnt arent wasnt werent wont wouldnt shouldnt couldnt "
    "hasnt havent hadnt aint nor neither nobody nothing nowhere".split()
)

# Prefixes and suffixes that negate the rest of the word (un-set, non-toxic, in-valid, state-less).
NEGATING_PREFIXES: tuple[str, ...] = ("non", "un", "in", "im", "il", "ir", "dis")
NEGATING_SUFFIXES: tuple[str, ...] = ("less",)

CARDINALS: dict[str, int] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}
MULTIPLIERS: dict[str, int] = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000,
                               "trillion": 1_000_000_000_000}
# Words that stand for a number without being one (a dozen eggs, twice as much, a hexagon).
IMPLIED_NUMBERS: dict[str, float] = {
    "dozen": 12, "twice": 2, "thrice": 3, "half": 0.5, "triangle": 3, "quadrilateral": 4, "pentagon": 5, "hexagon": 6, "heptagon": 7,
    "octagon": 8, "nonagon": 9, "decagon": 10, "dodecagon": 12,
}
# Exponent and root words: "x squared" is x^2, "cube root" is the third root. Weak: they may stand for a
# number the other side writes out, but never count as a number the other side lacks.
WEAK_NUMBER_WORDS: dict[str, int] = {"square": 2, "squared": 2, "cube": 3, "cubed": 3, "cubic": 3}
ORDINALS: dict[str, int] = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14, "fifteenth": 15,
    "twentieth": 20, "hundredth": 100, "thousandth": 1000,
}

# Spoken arithmetic, rewritten to symbols before numbers are compared ("x squared minus 5x" == "x^2 - 5x").
SPOKEN_OPERATORS: dict[str, str] = {
    "plus": "+", "minus": "-", "times": "*", "multiplied": "*", "divided": "/", "over": "/", "equals": "=",
    "squared": "^2", "cubed": "^3", "mod": "%", "modulo": "%",
}

# Pairs of words whose swap changes the answer. Each inner tuple lists interchangeable spellings of one pole.
ANTONYM_PAIRS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("add", "adding", "added", "insert", "inserting", "append", "push"),
     ("remove", "removing", "removed", "delete", "deleting", "deleted", "drop", "dropping", "pop", "erase")),
    (("start", "starts", "starting", "begin", "begins", "beginning", "front", "head", "prefix", "prepend",
      "leading", "initial", "opening"),
     ("end", "ends", "ending", "finish", "finishes", "back", "tail", "suffix", "trailing", "final", "closing")),
    (("first", "earliest", "oldest"), ("last", "latest", "newest", "youngest", "final")),
    (("top",), ("bottom",)),
    (("ascending", "asc", "increasing"), ("descending", "desc", "decreasing")),
    (("increase", "increases", "increased", "rise", "rises", "rising", "grow", "grows", "growth", "gain", "gains",
      "up", "raise", "raising", "higher", "more", "gainer", "gainers"),
     ("decrease", "decreases", "decreased", "fall", "falls", "falling", "drop", "drops", "shrink", "decline",
      "declines", "declining", "loss", "losses", "lose", "down", "lower", "lowering", "less", "fewer", "loser",
      "losers", "decliner", "decliners")),
    (("min", "minimum", "smallest", "smaller", "least", "lowest", "tiniest", "shortest", "fewest", "cheapest"),
     ("max", "maximum", "largest", "biggest", "bigger", "larger", "most", "highest", "greatest", "longest",
      "tallest", "priciest")),
    (("small", "tiny", "little", "short"), ("large", "big", "huge", "long", "tall")),
    (("hot", "hottest", "warm", "warmest", "summer"), ("cold", "coldest", "cool", "coolest", "winter")),
    (("fast", "fastest", "faster", "quick"), ("slow", "slowest", "slower")),
    (("deep", "deepest"), ("shallow", "shallowest")),
    (("heavy", "heaviest"), ("light", "lightest")),
    (("rich", "richest"), ("poor", "poorest")),
    (("best", "top"), ("worst",)),
    (("win", "wins", "winner", "winning"), ("lose", "loses", "loser", "losing")),
    (("buy", "buying", "purchase"), ("sell", "selling", "sale")),
    (("import", "importing"), ("export", "exporting")),
    (("input",), ("output",)),
    (("upload", "uploading"), ("download", "downloading")),
    (("encode", "encoding", "encrypt", "encrypting", "compress", "zip", "serialize", "marshal"),
     ("decode", "decoding", "decrypt", "decrypting", "decompress", "unzip", "deserialize", "unmarshal", "parse")),
    (("lock", "locking"), ("unlock", "unlocking")),
    (("enable", "enabling", "activate", "turn on", "switch on"), ("disable", "disabling", "deactivate",
                                                                 "turn off", "switch off")),
    (("show", "unhide", "display"), ("hide", "hiding")),
    (("open", "opening"), ("close", "closing", "shut")),
    (("install", "installing"), ("uninstall", "uninstalling")),
    (("mount",), ("unmount",)),
    (("connect", "connecting"), ("disconnect", "disconnecting")),
    (("include", "including", "inclusive"), ("exclude", "excluding", "exclusive", "except")),
    (("allow", "permit", "accept"), ("deny", "block", "reject", "forbid")),
    (("public",), ("private",)),
    (("global",), ("local",)),
    (("before", "prior", "previous", "earlier"), ("after", "next", "later", "following")),
    (("above",), ("below", "beneath")),
    (("inside", "inner", "internal", "interior", "indoor", "indoors"),
     ("outside", "outer", "external", "exterior", "outdoor", "outdoors")),
    (("upper", "uppercase", "capital", "capitalize"), ("lower", "lowercase")),
    (("left",), ("right",)),
    (("north", "northern"), ("south", "southern")),
    (("east", "eastern"), ("west", "western")),
    (("positive",), ("negative",)),
    (("odd",), ("even",)),
    (("true",), ("false",)),
    (("horizontal", "horizontally"), ("vertical", "vertically")),
    (("row", "rows"), ("column", "columns", "col")),
    (("sync", "synchronous", "synchronously"), ("async", "asynchronous", "asynchronously")),
    (("static", "statically"), ("dynamic", "dynamically")),
    (("mutable",), ("immutable",)),
    (("empty",), ("full",)),
    (("male", "boy", "boys", "husband", "boyfriend", "father", "son", "brother"),
     ("female", "woman", "women", "girl", "girls", "wife", "girlfriend", "mother", "daughter", "sister")),
    (("union",), ("intersection",)),
    (("shallow copy",), ("deep copy",)),
    (("stack",), ("queue",)),
    (("push",), ("pull",)),
    (("send", "sending"), ("receive", "receiving")),
    (("import",), ("export",)),
    (("arrival", "arrive", "arrives"), ("departure", "depart", "departs")),
    (("birth", "born"), ("death", "died", "die")),
    (("start", "starting"), ("stop", "stopping", "quit", "quitting")),
    (("join", "joining", "merge", "combine", "concatenate"), ("split", "splitting", "separate", "break")),
    (("sunrise",), ("sunset",)),
    (("profit",), ("loss",)),
    (("credit",), ("debit",)),
    (("bull", "bullish"), ("bear", "bearish")),
    (("bid",), ("ask",)),
    (("safe", "safest"), ("toxic", "poisonous", "dangerous", "unsafe")),
    (("easy", "easiest"), ("hard", "hardest", "difficult")),
    (("cheap", "cheapest", "cheaper"), ("expensive", "priciest", "pricier")),
    (("old", "older", "ancient"), ("new", "newer", "modern")),
    (("past",), ("future",)),
)

# Interchangeable spellings mapped to one canonical word before words are compared.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("start", "begin", "starts", "begins", "beginning", "starting", "started", "began"),
    ("end", "finish", "ends", "finishes", "finished", "ending"),
    ("large", "big", "huge"), ("largest", "biggest"), ("small", "tiny", "little"), ("smallest", "tiniest"),
    ("remove", "delete", "erase", "drop", "unset", "take away", "get rid"),
    ("add", "insert", "put"),
    ("create", "make", "generate", "build"),
    ("check", "test", "verify", "detect", "tell", "determine", "see"),
    ("convert", "turn", "transform", "change", "translate"),
    ("error", "exception", "err", "issue", "problem"),
    ("print", "display", "output", "show"),
    ("explain", "describe", "define", "definition", "meaning", "explained", "explanation"),
    ("difference", "differ", "differs", "vs", "versus", "compare", "comparison", "compared", "difference between"),
    ("learn", "study", "self-study"),
    ("fix", "solve", "resolve", "repair", "solution", "solutions"),
    ("kid", "kids", "child", "children", "toddler", "teen", "teenager"),
    ("parent", "parents", "mom and dad", "mother and father"),
    ("phone", "smartphone", "cellphone", "mobile"),
    ("price", "cost", "worth", "value", "quote", "trading", "trade", "trades", "valued", "priced"),
    ("stock", "share", "shares", "stocks", "equity"),
    ("now", "today", "current", "currently", "live", "latest", "right now", "at the moment", "this moment",
     "real time", "real-time", "presently", "todays", "today's", "moment"),
    ("movie", "film"), ("car", "automobile", "vehicle"), ("home", "house", "apartment", "flat", "place"),
    ("buy", "purchase"), ("job", "work", "career", "profession", "employment"),
    ("doctor", "physician"), ("quickly", "fast", "rapidly"),
    ("author", "writer", "wrote", "write", "written", "penned"),
    ("invent", "inventor", "invented", "inventing", "invention", "came up"),
    ("function", "func", "fn", "method", "procedure"),
    ("directory", "folder", "dir"),
    ("array", "list", "vector", "vec", "arr"),
    ("dictionary", "dict", "map", "hashmap", "hash map", "object"),
    ("string", "str", "text"),
    ("integer", "int", "whole number"),
    ("float", "floating point", "decimal number", "double"),
    ("number", "num", "no.", "count", "amount", "quantity", "total count"),
    ("element", "item", "entry", "member"),
    ("character", "char", "letter", "chars", "characters"),
    ("variable", "var"), ("argument", "arg", "parameter", "param"),
    ("repository", "repo"), ("application", "app", "program"), ("database", "db"),
    ("configuration", "config"), ("environment", "env"),
    ("picture", "photo", "image", "pic"),
    ("year", "yr", "date"),
    ("location", "located", "situated"),
    ("person", "people", "human", "humans", "man", "individual"),
    ("world", "earth", "planet", "globe"),
    ("capital", "capital city", "capitol"),
    ("country", "nation"),
    ("rate", "rates", "ratio"),
    ("quickest", "fastest"),
)

# Phrases that must be read as one word before tokens are compared (order matters: longest first).
PHRASES: tuple[str, ...] = (
    "right now", "at the moment", "real time", "turn on", "turn off", "switch on", "switch off", "take away",
    "get rid", "came up", "come up", "mom and dad", "mother and father", "shallow copy", "deep copy",
    "hash map", "whole number", "floating point", "decimal number", "capital city", "difference between",
    "total count", "this moment",
)
