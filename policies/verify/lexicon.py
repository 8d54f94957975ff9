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
once since until till while during though although because unless whereas whenever wherever however
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
# Words that put what follows in contrast without negating the question ("push to the start instead of
# the end" asks about the start): they flip antonym poles only.
CONTRASTS: frozenset[str] = frozenset({"instead", "rather", "unlike", "opposed"})
# Verbs that say "not" with a word of their own: "remove the permission" agrees with "not allowed".
NEGATIVE_VERBS: frozenset[str] = frozenset(
    "remove delete disable unset revoke stop prevent avoid block deny lack lacks missing lose quit drop".split()
)

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
    "dozen": 12, "twice": 2, "thrice": 3, "half": 0.5, "triangle": 3, "quadrilateral": 4, "pentagon": 5,
    "hexagon": 6, "heptagon": 7,
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

# Antonym pairs (by their first word) where naming one pole narrows the question even if the other side names
# neither: "the largest hot desert" is not "the largest desert".
SCOPE_PAIRS: frozenset[str] = frozenset({"hot", "male", "sync", "public", "static"})

# Pairs of words whose swap changes the answer. Each inner tuple lists interchangeable spellings of one pole.
ANTONYM_PAIRS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("add", "adding", "added", "insert", "inserting", "append", "push"),
     ("remove", "removing", "removed", "delete", "deleting", "deleted", "drop", "dropping", "pop", "erase")),
    (("start", "starts", "starting", "begin", "begins", "beginning", "front", "head", "prefix", "prepend",
      "prepending", "leading", "initial", "opening", "starter", "starters", "opener", "openers", "first"),
     ("end", "ends", "ending", "finish", "finishes", "back", "tail", "suffix", "trailing", "final", "closing",
      "append", "appending", "ender", "enders", "closer", "closers", "last")),
    (("earliest", "oldest"), ("latest", "newest", "youngest")),
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
    (("hot", "hottest", "warm", "warmest"), ("cold", "coldest", "cool", "coolest")),
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
    (("male", "boy", "boys"), ("female", "woman", "women", "girl", "girls")),
    (("union",), ("intersection",)),
    (("shallow copy",), ("deep copy",)),
    (("stack",), ("queue",)),
    (("push",), ("pull",)),
    (("send", "sending"), ("receive", "receiving")),
    (("import",), ("export",)),
    (("arrival", "arrive", "arrives"), ("departure", "depart", "departs")),
    (("birth", "born"), ("death", "died", "die")),
    (("start", "starting"), ("stop", "stopping", "quit", "quitting")),
    (("join", "joining", "merge", "combine", "concatenate"), ("split", "splitting", "break")),
    (("sunrise",), ("sunset",)),
    (("profit",), ("loss",)),
    (("credit",), ("debit",)),
    (("bull", "bullish"), ("bear", "bearish")),
    (("bid",), ("ask",)),
    (("safe", "safest"), ("toxic", "poisonous", "dangerous", "unsafe")),
    (("easy", "easiest"), ("hard", "hardest", "difficult")),
    (("soft", "softer", "softest"), ("hard", "harder", "hardest")),
    (("read_only", "readonly"), ("writable", "writeable", "read_write")),
    (("cheap", "cheapest", "cheaper"), ("expensive", "priciest", "pricier")),
    (("old", "older", "ancient"), ("new", "newer", "modern")),
    (("past",), ("future",)),
)

# Verbs that follow an infinitive "to" ("the syntax to add a column"): that "to" is no direction.
COMMON_VERBS: frozenset[str] = frozenset("""
add remove delete drop get make convert find check read write use create turn send learn tell take give put set
show print change move keep start stop open close run build install update upgrade load save store sort split join
merge compare calculate compute count measure test fix solve handle deal cope stay become go come do be have see
look say ask answer know think feel pick choose buy sell pay leave reach return round limit access select insert
append prepend push pop reverse parse decode encode format declare define implement iterate loop call pass reduce
increase decrease improve avoid prevent help let try work live eat sleep talk speak walk drive travel fly cross
win lose play watch listen bring break end finish begin quit
""".split())
# Words that, after a negator, make it a low amount rather than a "not": "without much light" is "low light".
QUANTIFIERS: frozenset[str] = frozenset({"much", "many", "enough", "lot", "lots", "plenty"})

# Interchangeable spellings mapped to one canonical word before words are compared.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("a", "an"),
    ("start", "begin", "starts", "begins", "beginning", "starting", "started", "began"),
    ("inside", "interior", "inner", "internal"), ("outside", "exterior", "outer", "external"),
    ("sum", "total", "add up", "adds up", "summation"),
    ("speed", "velocity", "how fast", "how quickly"),
    ("chemistry", "chemical"), ("default", "fallback"), ("alone", "solo", "by yourself", "on my own", "on your own"),
    ("budget", "cheap", "affordable", "inexpensive", "low cost", "for cheap", "on a budget"),
    ("temperature", "temp"), ("biology", "biological"), ("physics", "physical"),
    ("decimal", "decimals", "decimal places", "decimal place", "digits after the decimal point"),
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
    ("movie", "film"), ("car", "automobile", "vehicle"), ("home", "house", "apartment"),
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
    "total count", "this moment", "by yourself", "on my own", "on your own", "low cost", "for cheap",
    "on a budget", "read only", "read write", "add up", "adds up", "how fast", "how quickly",
)

# Ordinary words that are never typos of a lexicon word ("round" is not "pound", "rest" is not "rust"); also
# how a currency alias that is an everyday word ("won", "try") is told from one that only names an asset.
COMMON_WORDS: frozenset[str] = frozenset("""
able about above accept access account act action active activity actor add address admin adult advance affect
afraid after again against age agent agree ahead air alarm album alive allow alone along already alter always
amount angle angry animal annual answer apart appear apply area argue arm army around arrange arrive art article
ask asleep attack attempt attend audio author auto avoid award aware away baby back bad bag bake balance ball
band bank bar base basic basis bath battery battle beach bean bear beat beauty become bed beer before begin
behind believe bell belong below belt bench bend benefit beside best bet better beyond bike bill bind bird birth
bite black blade blame blank blind block blood blow blue board boat body boil bold bone bonus book boost boot
border born borrow boss both bottle bottom bound bowl box brain branch brand brave bread break breath brick bridge
brief bright bring broad broken brown brush budget bug build bunch burn burst bus business busy button cable cake
call calm camera camp card care career carry case cash cast catch cause cell center chain chair chance change
channel chapter charge chart chase cheap check cheese chest chief child choice choose church circle city claim
class clean clear click client climb clock close cloth cloud club coach coast code coffee coin cold collect
college color column combine come comfort comment common company compare complete concern condition confirm
connect consider contact contain content context continue control cook cool copy core corner correct cost could
count country couple course court cover crack craft crash crazy cream create credit crew crime cross crowd cry
culture cup cure current curve custom cut cycle damage dance danger dark data date daughter dead deal dear debt
decide deep defend degree delay deliver demand deny depend deploy depth design desk detail develop device diet
differ dig dinner direct dirt discuss dish disk distance divide doctor dog door double doubt down draft drag draw
dream dress drink drive drop drug dry due dust duty each eager early earn earth ease east easy eat edge edit
effect effort egg eight either elect else email empty enemy energy engine enjoy enough enter entire entry equal
error escape estate even event ever every exact exam except exchange excite exist exit expand expect expert
explain express extend extra eye face fact factor fail fair faith fall false family famous fan far farm fast fat
father fault favor fear feature fee feed feel fellow fence few field fight figure file fill film final fine
finger fire firm fish fit fix flag flat flight float floor flow flower fly focus fold follow food foot force
forest forget fork form format forward frame free fresh friend front fruit fuel full fun fund future gain game
gap garden gate gather gear gift girl glass goal gold golf good grab grade grain grand grant grass great green
ground group grow guard guess guest guide gun guy habit hair half hall hand handle hang happen happy hard harm
hate head health hear heart heat heavy height hell help hero hide high hill hint hire hit hold hole holiday
home hope horse host hot hotel hour house huge human hunt hurt idea image impact income index inside invest
iron island issue item job join joke judge juice jump junk just keep key kick kill kind king kitchen knee knife
know lab lack lady lake land lane large last late laugh law lawn lay layer lead leaf lean learn least leave left
leg lend length lesson letter level lie life lift light limit line link list listen live load loan local lock
log long look loop lose loss lot loud love low luck lunch machine mail main major make male mall man manage
many map mark market mass master match math matter meal mean meat media meet member memory mental menu mess
metal middle might mind mine minor mirror miss mix mode model moment money month mood moon more most mother
motor mount mouse mouth move movie much music must name narrow nation nature near neck need nerve net never new
news next nice night noise none noon normal north nose note notice novel nurse object offer office often oil
old open order other outer oven owner pace pack page pain paint pair panel paper park part party pass past path
pay peace peak pen people pepper per period person pet phone photo piano pick piece pile pilot pin pink pipe
pitch place plan plane plant plate play plot plus pocket point pole police policy pool poor pop port pose post
pot pound power press price pride print prior prize profit proof proud pull pump punch pure push put quarter
queen quiet quit quite quote race radio rail rain raise range rank rare rate reach read ready real reason
record red reduce region relax remote rent repeat reply report rest result return rich ride ring rise risk
river road rock role roll roof room root rope rose round route row rule run rush safe sail salad salt sand save
scale scene school score screen sea search season seat second secret section seed seek sell send sense serve
set seven shade shake shape share sharp sheet shelf shell shift shine ship shirt shock shoe shoot shop short
shot should show shower shut sick side sign silver simple sing single sink site size skill skin sky sleep slice
slide slip slow smart smell smile smoke snow soft soil solid solve song sort sound soup source south space spare
speak speed spell spend spin spirit split sport spot spread spring square staff stage stair stand star start
state stay steal steel step stick still stock stone stop store storm story strain street stress strike string
strong student study stuff style subject sugar suit summer sun supply sure surface sweet swim switch table tail
take talk tall tank tape target task taste tax tea teach team tear tell tend term test text thank theme theory
thing think third thread throw ticket tie tight time tip tired title toe tone tool tooth top topic total touch
tour town toy track trade train trash travel treat tree trial trick trip truck true trust truth try tube turn
twist type uncle union unit upper upset urban user usual value van vast verb view visit voice vote wage wait
wake walk wall want war warm wash waste watch water wave way weak wealth wear weather web week weight west
wheel while white whole wide wife wild will wind window wine wing winner winter wire wise wish woman wonder wood
word work world worry worth write wrong yard year yellow young zone
avalanche buck bucks dot kiwi pounds ripple tether won
""".split())

# Abstract nouns and light verbs that paraphrases swap freely ("the level of X" ~ "the value of X", "what causes
# X" ~ "why does X happen"). Left unmatched they are not evidence that the topic changed.
GENERIC_WORDS: frozenset[str] = frozenset("""
level value values performance perform doing status state condition figure figures data detail details fact facts
reason reasons cause causes caused happen happens happened occur occurs occurred result results effect
syntax code command commands snippet statement expression operation operations process procedure technique
strategy option options trick tricks suggestion suggestions recommendation recommendations
role purpose function functions definition meaning concept term terms idea notion
formula equation calculation calculate amount total count number numbers quantity size measure
use used using usage utilize apply make makes making made do does did take takes took taking put get gets goes
go going went come comes came have has having give gives
thing things something stuff kind type sort form version part piece bit lot whole entire overall
simple simply easy quick clean cleanest proper correct right good best better nice new existing
current actual basic main common usual normal standard typical general specific particular certain given
someone somebody anyone everyone one ones guy folks
able possible way ways method methods approach approaches solution solutions answer answers question questions
example examples sample demo tutorial guide explanation overview summary info information help tip tips advice
alternative alternatives equivalent equivalents difference differences
solve solving factor simplify evaluate root roots expression equation result
express expressed conversion convert converting representation represent represented write written notation
name named call called exchange world earth planet globe element elements item items entry entries member
members rather instead also actually really point points place places spot location part index
""".split())
