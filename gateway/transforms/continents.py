"""ISO 3166-1 alpha-2 country code -> continent code.

Continent codes: AF Africa, AN Antarctica, AS Asia, EU Europe, NA North America,
OC Oceania, SA South America. Used by the geo transform, which coarsens an IP address
to its country and continent.

Every one of the 249 officially assigned alpha-2 codes has exactly one continent.
Transcontinental countries take one, by the common convention of geo-IP databases:
RU -> EU; TR, CY, GE, AM, AZ, KZ -> AS; EG -> AF; PA -> NA; UM -> OC. The Caribbean and
Central America are NA; remote sub-Antarctic territories (BV, GS, HM, TF) are AN;
the Australian Indian Ocean territories (CC, CX) and IO are AS.

Codes outside the standard (user-assigned XK, the registries' EU and AP, ZZ) have no
continent: `continent_of` returns None for them.
"""

from __future__ import annotations

CONTINENTS: frozenset[str] = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})

CONTINENT: dict[str, str] = {
    "AD": "EU",  # Andorra
    "AE": "AS",  # United Arab Emirates
    "AF": "AS",  # Afghanistan
    "AG": "NA",  # Antigua and Barbuda
    "AI": "NA",  # Anguilla
    "AL": "EU",  # Albania
    "AM": "AS",  # Armenia
    "AO": "AF",  # Angola
    "AQ": "AN",  # Antarctica
    "AR": "SA",  # Argentina
    "AS": "OC",  # American Samoa
    "AT": "EU",  # Austria
    "AU": "OC",  # Australia
    "AW": "NA",  # Aruba
    "AX": "EU",  # Aland Islands
    "AZ": "AS",  # Azerbaijan
    "BA": "EU",  # Bosnia and Herzegovina
    "BB": "NA",  # Barbados
    "BD": "AS",  # Bangladesh
    "BE": "EU",  # Belgium
    "BF": "AF",  # Burkina Faso
    "BG": "EU",  # Bulgaria
    "BH": "AS",  # Bahrain
    "BI": "AF",  # Burundi
    "BJ": "AF",  # Benin
    "BL": "NA",  # Saint Barthelemy
    "BM": "NA",  # Bermuda
    "BN": "AS",  # Brunei Darussalam
    "BO": "SA",  # Bolivia
    "BQ": "NA",  # Bonaire, Sint Eustatius and Saba
    "BR": "SA",  # Brazil
    "BS": "NA",  # Bahamas
    "BT": "AS",  # Bhutan
    "BV": "AN",  # Bouvet Island
    "BW": "AF",  # Botswana
    "BY": "EU",  # Belarus
    "BZ": "NA",  # Belize
    "CA": "NA",  # Canada
    "CC": "AS",  # Cocos (Keeling) Islands
    "CD": "AF",  # Congo, Democratic Republic of the
    "CF": "AF",  # Central African Republic
    "CG": "AF",  # Congo
    "CH": "EU",  # Switzerland
    "CI": "AF",  # Cote d'Ivoire
    "CK": "OC",  # Cook Islands
    "CL": "SA",  # Chile
    "CM": "AF",  # Cameroon
    "CN": "AS",  # China
    "CO": "SA",  # Colombia
    "CR": "NA",  # Costa Rica
    "CU": "NA",  # Cuba
    "CV": "AF",  # Cabo Verde
    "CW": "NA",  # Curacao
    "CX": "AS",  # Christmas Island
    "CY": "AS",  # Cyprus
    "CZ": "EU",  # Czechia
    "DE": "EU",  # Germany
    "DJ": "AF",  # Djibouti
    "DK": "EU",  # Denmark
    "DM": "NA",  # Dominica
    "DO": "NA",  # Dominican Republic
    "DZ": "AF",  # Algeria
    "EC": "SA",  # Ecuador
    "EE": "EU",  # Estonia
    "EG": "AF",  # Egypt
    "EH": "AF",  # Western Sahara
    "ER": "AF",  # Eritrea
    "ES": "EU",  # Spain
    "ET": "AF",  # Ethiopia
    "FI": "EU",  # Finland
    "FJ": "OC",  # Fiji
    "FK": "SA",  # Falkland Islands (Malvinas)
    "FM": "OC",  # Micronesia, Federated States of
    "FO": "EU",  # Faroe Islands
    "FR": "EU",  # France
    "GA": "AF",  # Gabon
    "GB": "EU",  # United Kingdom
    "GD": "NA",  # Grenada
    "GE": "AS",  # Georgia
    "GF": "SA",  # French Guiana
    "GG": "EU",  # Guernsey
    "GH": "AF",  # Ghana
    "GI": "EU",  # Gibraltar
    "GL": "NA",  # Greenland
    "GM": "AF",  # Gambia
    "GN": "AF",  # Guinea
    "GP": "NA",  # Guadeloupe
    "GQ": "AF",  # Equatorial Guinea
    "GR": "EU",  # Greece
    "GS": "AN",  # South Georgia and the South Sandwich Islands
    "GT": "NA",  # Guatemala
    "GU": "OC",  # Guam
    "GW": "AF",  # Guinea-Bissau
    "GY": "SA",  # Guyana
    "HK": "AS",  # Hong Kong
    "HM": "AN",  # Heard Island and McDonald Islands
    "HN": "NA",  # Honduras
    "HR": "EU",  # Croatia
    "HT": "NA",  # Haiti
    "HU": "EU",  # Hungary
    "ID": "AS",  # Indonesia
    "IE": "EU",  # Ireland
    "IL": "AS",  # Israel
    "IM": "EU",  # Isle of Man
    "IN": "AS",  # India
    "IO": "AS",  # British Indian Ocean Territory
    "IQ": "AS",  # Iraq
    "IR": "AS",  # Iran
    "IS": "EU",  # Iceland
    "IT": "EU",  # Italy
    "JE": "EU",  # Jersey
    "JM": "NA",  # Jamaica
    "JO": "AS",  # Jordan
    "JP": "AS",  # Japan
    "KE": "AF",  # Kenya
    "KG": "AS",  # Kyrgyzstan
    "KH": "AS",  # Cambodia
    "KI": "OC",  # Kiribati
    "KM": "AF",  # Comoros
    "KN": "NA",  # Saint Kitts and Nevis
    "KP": "AS",  # Korea, Democratic People's Republic of
    "KR": "AS",  # Korea, Republic of
    "KW": "AS",  # Kuwait
    "KY": "NA",  # Cayman Islands
    "KZ": "AS",  # Kazakhstan
    "LA": "AS",  # Lao People's Democratic Republic
    "LB": "AS",  # Lebanon
    "LC": "NA",  # Saint Lucia
    "LI": "EU",  # Liechtenstein
    "LK": "AS",  # Sri Lanka
    "LR": "AF",  # Liberia
    "LS": "AF",  # Lesotho
    "LT": "EU",  # Lithuania
    "LU": "EU",  # Luxembourg
    "LV": "EU",  # Latvia
    "LY": "AF",  # Libya
    "MA": "AF",  # Morocco
    "MC": "EU",  # Monaco
    "MD": "EU",  # Moldova
    "ME": "EU",  # Montenegro
    "MF": "NA",  # Saint Martin (French part)
    "MG": "AF",  # Madagascar
    "MH": "OC",  # Marshall Islands
    "MK": "EU",  # North Macedonia
    "ML": "AF",  # Mali
    "MM": "AS",  # Myanmar
    "MN": "AS",  # Mongolia
    "MO": "AS",  # Macao
    "MP": "OC",  # Northern Mariana Islands
    "MQ": "NA",  # Martinique
    "MR": "AF",  # Mauritania
    "MS": "NA",  # Montserrat
    "MT": "EU",  # Malta
    "MU": "AF",  # Mauritius
    "MV": "AS",  # Maldives
    "MW": "AF",  # Malawi
    "MX": "NA",  # Mexico
    "MY": "AS",  # Malaysia
    "MZ": "AF",  # Mozambique
    "NA": "AF",  # Namibia
    "NC": "OC",  # New Caledonia
    "NE": "AF",  # Niger
    "NF": "OC",  # Norfolk Island
    "NG": "AF",  # Nigeria
    "NI": "NA",  # Nicaragua
    "NL": "EU",  # Netherlands
    "NO": "EU",  # Norway
    "NP": "AS",  # Nepal
    "NR": "OC",  # Nauru
    "NU": "OC",  # Niue
    "NZ": "OC",  # New Zealand
    "OM": "AS",  # Oman
    "PA": "NA",  # Panama
    "PE": "SA",  # Peru
    "PF": "OC",  # French Polynesia
    "PG": "OC",  # Papua New Guinea
    "PH": "AS",  # Philippines
    "PK": "AS",  # Pakistan
    "PL": "EU",  # Poland
    "PM": "NA",  # Saint Pierre and Miquelon
    "PN": "OC",  # Pitcairn
    "PR": "NA",  # Puerto Rico
    "PS": "AS",  # Palestine, State of
    "PT": "EU",  # Portugal
    "PW": "OC",  # Palau
    "PY": "SA",  # Paraguay
    "QA": "AS",  # Qatar
    "RE": "AF",  # Reunion
    "RO": "EU",  # Romania
    "RS": "EU",  # Serbia
    "RU": "EU",  # Russian Federation
    "RW": "AF",  # Rwanda
    "SA": "AS",  # Saudi Arabia
    "SB": "OC",  # Solomon Islands
    "SC": "AF",  # Seychelles
    "SD": "AF",  # Sudan
    "SE": "EU",  # Sweden
    "SG": "AS",  # Singapore
    "SH": "AF",  # Saint Helena, Ascension and Tristan da Cunha
    "SI": "EU",  # Slovenia
    "SJ": "EU",  # Svalbard and Jan Mayen
    "SK": "EU",  # Slovakia
    "SL": "AF",  # Sierra Leone
    "SM": "EU",  # San Marino
    "SN": "AF",  # Senegal
    "SO": "AF",  # Somalia
    "SR": "SA",  # Suriname
    "SS": "AF",  # South Sudan
    "ST": "AF",  # Sao Tome and Principe
    "SV": "NA",  # El Salvador
    "SX": "NA",  # Sint Maarten (Dutch part)
    "SY": "AS",  # Syrian Arab Republic
    "SZ": "AF",  # Eswatini
    "TC": "NA",  # Turks and Caicos Islands
    "TD": "AF",  # Chad
    "TF": "AN",  # French Southern Territories
    "TG": "AF",  # Togo
    "TH": "AS",  # Thailand
    "TJ": "AS",  # Tajikistan
    "TK": "OC",  # Tokelau
    "TL": "AS",  # Timor-Leste
    "TM": "AS",  # Turkmenistan
    "TN": "AF",  # Tunisia
    "TO": "OC",  # Tonga
    "TR": "AS",  # Turkiye
    "TT": "NA",  # Trinidad and Tobago
    "TV": "OC",  # Tuvalu
    "TW": "AS",  # Taiwan
    "TZ": "AF",  # Tanzania
    "UA": "EU",  # Ukraine
    "UG": "AF",  # Uganda
    "UM": "OC",  # United States Minor Outlying Islands
    "US": "NA",  # United States of America
    "UY": "SA",  # Uruguay
    "UZ": "AS",  # Uzbekistan
    "VA": "EU",  # Holy See
    "VC": "NA",  # Saint Vincent and the Grenadines
    "VE": "SA",  # Venezuela
    "VG": "NA",  # Virgin Islands (British)
    "VI": "NA",  # Virgin Islands (U.S.)
    "VN": "AS",  # Viet Nam
    "VU": "OC",  # Vanuatu
    "WF": "OC",  # Wallis and Futuna
    "WS": "OC",  # Samoa
    "YE": "AS",  # Yemen
    "YT": "AF",  # Mayotte
    "ZA": "AF",  # South Africa
    "ZM": "AF",  # Zambia
    "ZW": "AF",  # Zimbabwe
}


def continent_of(cc: str) -> str | None:
    """Continent code of an ISO 3166-1 alpha-2 country code (either case), else None."""
    if len(cc) != 2 or not cc.isascii():
        return None
    return CONTINENT.get(cc.upper())
