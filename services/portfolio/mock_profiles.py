"""The simulated market's stock profiles, kept as data: each listing's real GICS sector and
sub-industry, the country of its headquarters (an ETF's: its domicile) and its asset type.
ETFs hold many sectors: they are "Diversified", with their category as the industry."""

from __future__ import annotations

STOCK = "Stock"
ETF = "ETF"
US = "United States"

IT = "Information Technology"
COMMS = "Communication Services"
DISCRETIONARY = "Consumer Discretionary"
STAPLES = "Consumer Staples"
FINANCIALS = "Financials"
HEALTH = "Health Care"
ENERGY = "Energy"
INDUSTRIALS = "Industrials"
DIVERSIFIED = "Diversified"

# symbol: (sector, industry, country, asset type)
PROFILES: dict[str, tuple[str, str, str, str]] = {
    "AAPL": (IT, "Technology Hardware, Storage & Peripherals", US, STOCK),
    "MSFT": (IT, "Systems Software", US, STOCK),
    "GOOGL": (COMMS, "Interactive Media & Services", US, STOCK),
    "AMZN": (DISCRETIONARY, "Broadline Retail", US, STOCK),
    "NVDA": (IT, "Semiconductors", US, STOCK),
    "META": (COMMS, "Interactive Media & Services", US, STOCK),
    "TSLA": (DISCRETIONARY, "Automobile Manufacturers", US, STOCK),
    "JPM": (FINANCIALS, "Diversified Banks", US, STOCK),
    "V": (FINANCIALS, "Transaction & Payment Processing Services", US, STOCK),
    "MA": (FINANCIALS, "Transaction & Payment Processing Services", US, STOCK),
    "BAC": (FINANCIALS, "Diversified Banks", US, STOCK),
    "JNJ": (HEALTH, "Pharmaceuticals", US, STOCK),
    "UNH": (HEALTH, "Managed Health Care", US, STOCK),
    "PFE": (HEALTH, "Pharmaceuticals", US, STOCK),
    "WMT": (STAPLES, "Consumer Staples Merchandise Retail", US, STOCK),
    "COST": (STAPLES, "Consumer Staples Merchandise Retail", US, STOCK),
    "HD": (DISCRETIONARY, "Home Improvement Retail", US, STOCK),
    "PG": (STAPLES, "Household Products", US, STOCK),
    "KO": (STAPLES, "Soft Drinks & Non-alcoholic Beverages", US, STOCK),
    "PEP": (STAPLES, "Soft Drinks & Non-alcoholic Beverages", US, STOCK),
    "MCD": (DISCRETIONARY, "Restaurants", US, STOCK),
    "XOM": (ENERGY, "Integrated Oil & Gas", US, STOCK),
    "CVX": (ENERGY, "Integrated Oil & Gas", US, STOCK),
    "DIS": (COMMS, "Movies & Entertainment", US, STOCK),
    "NFLX": (COMMS, "Movies & Entertainment", US, STOCK),
    "INTC": (IT, "Semiconductors", US, STOCK),
    "AMD": (IT, "Semiconductors", US, STOCK),
    "IBM": (IT, "IT Consulting & Other Services", US, STOCK),
    "ORCL": (IT, "Application Software", US, STOCK),
    "CSCO": (IT, "Communications Equipment", US, STOCK),
    "CRM": (IT, "Application Software", US, STOCK),
    "ADBE": (IT, "Application Software", US, STOCK),
    "BA": (INDUSTRIALS, "Aerospace & Defense", US, STOCK),
    "GE": (INDUSTRIALS, "Aerospace & Defense", US, STOCK),
    "NKE": (DISCRETIONARY, "Apparel, Accessories & Luxury Goods", US, STOCK),
    "SBUX": (DISCRETIONARY, "Restaurants", US, STOCK),
    "T": (COMMS, "Integrated Telecommunication Services", US, STOCK),
    "VZ": (COMMS, "Integrated Telecommunication Services", US, STOCK),
    "BRK.B": (FINANCIALS, "Multi-Sector Holdings", US, STOCK),
    "SPY": (DIVERSIFIED, "Large Blend", US, ETF),
    "QQQ": (DIVERSIFIED, "Large Growth", US, ETF),
    "SAP": (IT, "Application Software", "Germany", STOCK),
    "ASML": (IT, "Semiconductor Materials & Equipment", "Netherlands", STOCK),
    "NESN": (STAPLES, "Packaged Foods & Meats", "Switzerland", STOCK),
    "SHEL": (ENERGY, "Integrated Oil & Gas", "United Kingdom", STOCK),
    "7203": (DISCRETIONARY, "Automobile Manufacturers", "Japan", STOCK),
}
