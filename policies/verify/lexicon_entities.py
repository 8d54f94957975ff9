"""Named things that make two look-alike questions different: languages, currencies, places, units, times...

Each class maps every spelling (lower case; multi-word phrases allowed) to one canonical name. Two questions
that name different members of one class ask different things ("in Python" vs "in Rust"). General knowledge
only; nothing here comes from an evaluation set.
"""

from __future__ import annotations


def _table(*groups: str) -> dict[str, str]:
    """Build spelling -> canonical from "canonical|alias|alias" strings."""
    table: dict[str, str] = {}
    for group in groups:
        names = [name.strip() for name in group.split("|")]
        for name in names:
            table[name] = names[0]
    return table


PROGRAMMING_LANGUAGES = _table(
    "python|py|python3", "javascript|js|ecmascript|java script|node|nodejs|node.js",
    "typescript|ts", "java", "kotlin", "scala", "c++|cpp|cplusplus", "c#|csharp|c sharp", "golang|go|go lang",
    "rust|rustlang", "ruby", "php", "perl", "swift", "objective-c|objc", "matlab", "julia", "haskell", "elixir",
    "erlang", "clojure", "lua", "dart", "fortran", "cobol", "groovy", "f#|fsharp", "ocaml", "zig", "nim",
    "shell|bash|sh|zsh|shell script", "powershell|ps1", "vba|visual basic|vb.net", "assembly|asm",
    "solidity", "r language|rlang", "sql",
)
DATABASES = _table(
    "postgresql|postgres|psql|postgre sql|postgre", "mysql", "mariadb", "sqlite|sqlite3",
    "sql server|mssql|ms sql|t-sql|tsql|transact-sql|ms sql server|microsoft sql server", "oracle|oracle db|plsql",
    "mongodb|mongo", "redis", "cassandra", "elasticsearch|elastic", "dynamodb", "snowflake", "bigquery",
    "neo4j", "couchdb", "firebase|firestore",
)
FRAMEWORKS = _table(
    "react|reactjs|react.js", "vue|vuejs|vue.js", "angular|angularjs", "svelte", "jquery", "next.js|nextjs",
    "django", "flask", "fastapi", "rails|ruby on rails", "spring|spring boot", "express|expressjs", "laravel",
    "pandas", "numpy", "pytorch|torch", "tensorflow", "keras", "scikit-learn|sklearn", ".net|dotnet",
    "tokio", "asyncio",
)
PLATFORMS = _table(
    "linux", "windows|win10|win11", "macos|mac|osx|os x", "ubuntu", "debian", "fedora", "centos", "android",
    "ios|iphone|ipad", "docker", "kubernetes|k8s", "aws|amazon web services", "azure", "gcp|google cloud",
)
DATA_FORMATS = _table(
    "json", "csv", "xml", "yaml|yml", "toml", "html", "markdown|md", "pdf", "excel|xlsx|xls", "parquet",
    "protobuf", "ini",
)
NUMERAL_SYSTEMS = _table("binary|base 2", "octal|base 8", "hexadecimal|hex|base 16", "base 64|base64")
CURRENCIES = _table(
    "usd|dollar|dollars|us dollar|us dollars|american dollar|greenback|buck|bucks|$",
    "eur|euro|euros|€", "gbp|pound sterling|sterling|british pound|british pounds|quid|£|pound|pounds",
    "jpy|yen|japanese yen", "cny|yuan|renminbi|rmb|chinese yuan", "krw|won|korean won|south korean won",
    "inr|rupee|rupees|indian rupee", "rub|ruble|rouble|russian ruble", "chf|swiss franc|franc",
    "cad|canadian dollar|loonie", "aud|australian dollar|aussie dollar|aussie", "nzd|new zealand dollar|kiwi dollar",
    "mxn|peso|mexican peso", "brl|brazilian real", "zar|rand|south african rand", "hkd|hong kong dollar",
    "sgd|singapore dollar", "sek|swedish krona", "nok|norwegian krone", "dkk|danish krone", "pln|zloty|polish zloty",
    "try|lira|turkish lira", "thb|baht|thai baht", "idr|rupiah", "ils|shekel", "aed|dirham", "sar|riyal",
    "btc|bitcoin|bitcoins", "eth|ether|ethereum", "ltc|litecoin", "xrp|ripple", "doge|dogecoin",
    "ada|cardano", "sol|solana", "dot|polkadot", "bnb|binance coin", "usdt|tether", "usdc", "xmr|monero",
    "trx|tron", "avax|avalanche", "link|chainlink", "shib|shiba inu",
)
COUNTRIES = _table(
    "united states|usa|us|america|united states of america|u.s.|american", "canada|canadian",
    "mexico|mexican", "brazil|brazilian", "argentina|argentinian", "chile|chilean", "peru|peruvian",
    "colombia|colombian", "venezuela", "united kingdom|uk|britain|great britain|england|british|english",
    "ireland|irish", "france|french", "germany|german", "italy|italian", "spain|spanish", "portugal|portuguese",
    "netherlands|holland|dutch", "belgium|belgian", "switzerland|swiss", "austria|austrian", "sweden|swedish",
    "norway|norwegian", "denmark|danish", "finland|finnish", "iceland|icelandic", "poland|polish",
    "czech republic|czechia|czech", "hungary|hungarian", "greece|greek", "turkey|turkish", "russia|russian",
    "ukraine|ukrainian", "israel|israeli", "egypt|egyptian", "saudi arabia|saudi", "iran|iranian", "iraq",
    "india|indian", "pakistan|pakistani", "bangladesh", "china|chinese", "japan|japanese", "south korea|korea|korean",
    "north korea", "taiwan|taiwanese", "vietnam|vietnamese", "thailand|thai", "indonesia|indonesian",
    "philippines|filipino", "malaysia|malaysian", "singapore", "australia|australian|aussie",
    "new zealand|kiwi", "south africa|south african", "nigeria|nigerian", "kenya|kenyan", "ethiopia",
    "morocco|moroccan", "vatican|vatican city", "monaco", "luxembourg", "cuba|cuban", "jamaica|jamaican",
)
CITIES = _table(
    "new york|nyc|new york city", "los angeles|la", "chicago", "san francisco|sf", "seattle", "boston",
    "washington dc|washington d.c.|dc", "miami", "toronto", "ottawa", "vancouver", "montreal", "mexico city",
    "london", "paris", "berlin", "madrid", "rome|roman|romans", "milan", "amsterdam", "brussels", "vienna",
    "zurich", "geneva",
    "stockholm", "oslo", "copenhagen", "helsinki", "dublin", "lisbon", "prague", "warsaw", "budapest", "athens",
    "istanbul", "ankara", "moscow", "kyiv|kiev", "cairo", "dubai", "tel aviv", "jerusalem", "delhi|new delhi",
    "mumbai", "beijing", "shanghai", "hong kong", "tokyo", "osaka", "seoul", "bangkok", "singapore city",
    "jakarta", "manila", "sydney", "melbourne", "canberra", "auckland", "wellington", "cape town",
    "johannesburg", "nairobi", "lagos", "rio de janeiro|rio", "sao paulo", "buenos aires", "lima", "bogota",
)
CONTINENTS = _table("africa|african", "antarctica|antarctic", "asia|asian", "europe|european",
                    "north america|north american", "south america|south american", "oceania", "arctic")
COMPANIES = _table(
    "apple|aapl", "microsoft|msft", "google|alphabet|googl|goog", "amazon|amzn", "meta|facebook|fb",
    "tesla|tsla", "nvidia|nvda", "amd|advanced micro devices", "intel|intc", "ibm", "oracle|orcl",
    "netflix|nflx", "disney|walt disney|dis", "coca-cola|coca cola|coke|ko", "pepsico|pepsi|pep",
    "walmart|wmt", "costco", "mcdonald's|mcdonalds|mcd", "starbucks|sbux", "nike|nke", "boeing|ba", "airbus",
    "jpmorgan|jp morgan|jpmorgan chase|jpm", "goldman sachs|goldman|gs", "morgan stanley", "bank of america|bac",
    "wells fargo", "citigroup|citi", "visa", "mastercard", "paypal|pypl", "berkshire hathaway|berkshire",
    "exxon|exxonmobil|xom", "chevron|cvx", "pfizer|pfe", "johnson & johnson|j&j|jnj", "samsung", "sony",
    "toyota", "volkswagen|vw", "uber", "airbnb", "spotify", "salesforce|crm", "adobe|adbe", "palantir|pltr",
    "openai", "anthropic", "twitter|x corp",
)
MARKET_INDICES = _table(
    "s&p 500|s&p|sp500|spx|s and p", "dow jones|dow|djia", "nasdaq|nasdaq composite|nasdaq 100", "russell 2000",
    "ftse 100|ftse|footsie", "dax|dax 40", "cac 40|cac", "nikkei 225|nikkei", "hang seng", "euro stoxx 50|stoxx",
    "sensex", "nifty|nifty 50", "kospi", "shanghai composite", "asx 200|asx", "tsx", "vix",
)
COMMODITIES = _table(
    "gold", "silver", "platinum", "palladium", "copper", "oil|crude|crude oil|wti|brent",
    "natural gas|gas", "wheat", "corn", "soybeans|soybean|soy", "coffee", "sugar", "cotton", "cocoa", "lumber",
    "iron ore", "aluminum|aluminium", "nickel", "zinc", "uranium", "lithium",
)
CHEMICAL_ELEMENTS = _table(
    "hydrogen", "helium", "lithium", "carbon", "nitrogen", "oxygen", "fluorine", "neon", "sodium", "magnesium",
    "aluminum|aluminium", "silicon", "phosphorus", "sulfur|sulphur", "chlorine", "argon", "potassium", "calcium",
    "titanium", "chromium", "manganese", "iron", "cobalt", "nickel", "copper", "zinc", "silver", "tin", "iodine",
    "platinum", "gold", "mercury", "lead", "uranium", "plutonium", "radium", "tungsten", "krypton", "xenon",
)
PLANETS = _table("mercury", "venus", "earth", "mars", "jupiter", "saturn", "uranus", "neptune", "pluto",
                 "moon|lunar", "sun|solar")
ANIMALS = _table(
    "human|humans|humankind|mankind|homo sapiens", "dog|puppy|puppies|dogs|pup|canine",
    "cat|kitten|kittens|cats|kitty|feline", "horse|pony|foal", "cow|cattle",
    "pig|piglet", "sheep|lamb", "goat", "chicken|hen", "duck", "bird|birds", "fish|goldfish", "hamster",
    "guinea pig", "rabbit|bunny", "mouse|mice", "rat", "snake", "lizard", "turtle|tortoise", "frog", "bee|bees",
    "ant|ants", "spider", "lion", "tiger", "bear", "wolf", "fox", "deer", "elephant", "giraffe", "monkey",
    "gorilla", "chimpanzee|chimp", "whale", "dolphin", "shark", "octopus", "eagle", "owl", "parrot", "penguin",
    "mosquito", "butterfly",
)
MONTHS = _table(
    "january|jan", "february|feb", "march|mar", "april|apr", "may", "june|jun", "july|jul", "august|aug",
    "september|sep|sept", "october|oct", "november|nov", "december|dec",
)
WEEKDAYS = _table("monday|mon", "tuesday|tue|tues", "wednesday|wed", "thursday|thu|thurs", "friday|fri",
                  "saturday|sat", "sunday|sun")
# The season a month falls in (northern hemisphere), so "a date idea for July" is a summer question.
MONTH_SEASONS: dict[str, str] = {
    "december": "winter", "january": "winter", "february": "winter", "march": "spring", "april": "spring",
    "may": "spring", "june": "summer", "july": "summer", "august": "summer", "september": "autumn",
    "october": "autumn", "november": "autumn",
}
SEASONS = _table("winter|wintertime", "spring|springtime", "summer|summertime", "autumn|fall")
HOLIDAYS = _table("christmas|xmas", "thanksgiving", "easter", "halloween", "new year|new year's|new years",
                  "valentine's day|valentines|valentine", "hanukkah", "diwali", "ramadan", "eid")
# Relative times: a question about yesterday is not a question about today.
TIME_REFERENCES = _table(
    "today|now|todays|current|currently|live|latest|right now|at the moment|this moment|real time|real-time|"
    "presently|this week|tonight",
    "yesterday|last week|last month|last year|previous day|a year ago|last night|historical",
    "tomorrow|next week|next month|next year|forecast|prediction",
)
UNITS = _table(
    "millimeter|mm|millimeters|millimetre|millimetres", "centimeter|cm|centimeters|centimetre|centimetres",
    "meter|meters|metre|metres", "kilometer|km|kilometers|kilometre|kilometres|kms",
    "inch|inches", "foot|feet|ft", "yard|yards|yd", "mile|miles|mi", "nautical mile|nautical miles",
    "milligram|mg|milligrams", "gram|grams|gr", "kilogram|kg|kilograms|kilo|kilos|kgs",
    "pound|pounds|lb|lbs", "ounce|ounces|oz", "ton|tons|tonne|tonnes", "stone|stones",
    "milliliter|ml|milliliters|millilitre", "liter|liters|litre|litres", "gallon|gallons|gal", "quart|quarts",
    "pint|pints", "cup|cups", "tablespoon|tablespoons|tbsp", "teaspoon|teaspoons|tsp", "fluid ounce|fl oz",
    "celsius|centigrade|°c", "fahrenheit|°f", "kelvin",
    "millisecond|ms|milliseconds", "second|seconds|sec|secs", "minute|minutes|mins", "hour|hours|hr|hrs",
    "day|days", "week|weeks", "month|months", "year|years|yr|yrs",
    "bit|bits", "byte|bytes", "kilobyte|kb|kilobytes", "megabyte|mb|megabytes", "gigabyte|gb|gigabytes",
    "terabyte|tb|terabytes", "mph|miles per hour", "km/h|kmh|kph|kilometers per hour|km per hour", "knot|knots",
    "joule|joules", "calorie|calories|kcal", "kilowatt hour|kwh", "watt|watts", "acre|acres",
    "hectare|hectares", "square meter|square meters|sq m", "square foot|square feet|sq ft",
    "radian|radians", "psi", "pascal|pascals", "atmosphere|atm", "percent|%|percentage|pct",
)
# Unit spellings that are single letters or common words: only a unit right after a number ("5 m", "3 in").
NUMBER_BOUND_UNITS = _table("meter|m", "gram|g", "liter|l", "second|s", "hour|h", "celsius|c", "fahrenheit|f",
                            "minute|min")
GEOMETRY_MEASURES = _table(
    "area|surface area|surface|square kilometer|square kilometers|square meter|square meters|square mile|"
    "square miles|square foot|square feet|sq km|sq m|sq ft|sq mi|acre|acres|hectare|hectares", "perimeter",
    "volume", "circumference",
                           "diagonal", "radius", "diameter", "height", "width", "length")
MATH_OPERATIONS = _table(
    "sum|addition", "subtraction|subtract", "product|multiply|multiplication", "quotient|division",
    "remainder|mod|modulo|modulus|left over", "square root|sqrt", "cube root|third root", "logarithm|log|ln",
    "factorial", "derivative|differentiate|differentiation", "integral|integrate|antiderivative|integration",
    "mean|average|avg", "median", "mode", "variance", "standard deviation|std dev|stdev",
    "combination|combinations|choose|ncr|binomial coefficient|unordered selection|unordered selections|"
    "order does not matter", "permutation|permutations|permute|npr|arrange|arrangements|ordered selection|"
    "ordered selections|order matters",
    "gcd|greatest common divisor|hcf", "lcm|least common multiple", "exponent|power",
)
SHAPES = _table("circle", "square", "rectangle", "triangle", "cube", "sphere", "cylinder", "cone", "pyramid",
                "hexagon", "octagon", "pentagon", "trapezoid", "parallelogram", "rhombus", "ellipse")

# Classes whose members contrast with each other. A class may share a spelling with another ("pound" is a
# currency and a unit): each class is compared on its own.
ENTITY_CLASSES: dict[str, dict[str, str]] = {
    "language": PROGRAMMING_LANGUAGES, "database": DATABASES, "framework": FRAMEWORKS, "platform": PLATFORMS,
    "format": DATA_FORMATS, "numeral-system": NUMERAL_SYSTEMS, "currency": CURRENCIES, "country": COUNTRIES,
    "city": CITIES, "continent": CONTINENTS, "company": COMPANIES, "index": MARKET_INDICES,
    "commodity": COMMODITIES, "element": CHEMICAL_ELEMENTS, "planet": PLANETS, "animal": ANIMALS,
    "month": MONTHS, "weekday": WEEKDAYS, "season": SEASONS, "holiday": HOLIDAYS, "time": TIME_REFERENCES,
    "unit": UNITS, "measure": GEOMETRY_MEASURES, "operation": MATH_OPERATIONS, "shape": SHAPES,
}
# Spellings that are also ordinary words ("try", "us", "may", "lead"): they name the entity only when written
# with a capital letter somewhere other than at the start of the question.
CASE_SENSITIVE: dict[str, frozenset[str]] = {
    "currency": frozenset({"try", "dot", "sol", "link", "rub", "ada", "real"}),
    "country": frozenset({"us", "american", "english", "turkey", "chile", "kiwi"}),
    "city": frozenset({"la", "dc", "sf", "rio", "nice"}),
    "company": frozenset({"ba", "gs", "ko", "dis", "pep", "crm", "visa", "meta", "apple", "amazon", "coke",
                          "uber"}),
    "month": frozenset({"mar", "may", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "jan", "feb",
                        "apr", "march"}),
    "weekday": frozenset({"mon", "tue", "tues", "wed", "thu", "thurs", "fri", "sat", "sun"}),
    "element": frozenset({"lead", "tin"}),
    "commodity": frozenset({"gas"}),
    "season": frozenset({"fall", "spring"}),
    "operation": frozenset({"mode", "power", "log"}),
    "unit": frozenset({"stone", "stones"}),
    "language": frozenset({"dart", "swift"}),
    "framework": frozenset({"spring", "express", "next.js", "flask"}),
}
