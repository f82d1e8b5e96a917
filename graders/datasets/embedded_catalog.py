"""Word lists for the generated support knowledge base (`graders.datasets.embedded`).

Each entity has the words a *document* uses and, separately, the words a *customer* uses
when asking about it. Paraphrased queries draw only from the customer words, so lexical
overlap with the answering document is low on purpose; that gap is what dense retrieval
is supposed to bridge.
"""
from __future__ import annotations

REGIONS = {
    # name in docs: (short code in docs, how customers say it)
    "United States": ("US", ["in the States", "here in America", "living in Texas", "in the US"]),
    "Canada": ("CA", ["in Toronto", "up north in Ontario", "in Vancouver", "in Canada"]),
    "United Kingdom": ("UK", ["in Britain", "in London", "in the UK", "over in England"]),
    "European Union": ("EU", ["in Germany", "in France", "living in Spain", "in the EU"]),
    "Australia": ("AU", ["in Sydney", "down under", "in Melbourne", "in Australia"]),
}

TIERS = {
    "Standard": ["a free account", "no paid membership", "a basic account"],
    "Plus": ["the mid-level paid plan", "the cheaper paid subscription", "the middle membership"],
    "Premier": ["the top-tier membership", "the most expensive subscription", "the highest plan"],
}

# Product categories: doc noun (singular, plural) and what customers call them.
CATEGORIES = {
    "headphones": ("wireless headphone", "wireless headphones", ["earbuds", "headset", "cans", "earphones"]),
    "laptops": ("laptop", "laptops", ["notebook computer", "ultrabook", "work computer"]),
    "smartwatches": ("smartwatch", "smartwatches", ["fitness tracker", "wrist wearable", "activity band"]),
    "coffee": ("coffee machine", "coffee machines", ["espresso maker", "bean-to-cup brewer", "cappuccino maker"]),
    "vacuums": ("vacuum cleaner", "vacuum cleaners", ["hoover", "robot vac", "cordless stick cleaner"]),
    "televisions": ("television", "televisions", ["TV", "smart screen", "telly"]),
    "phones": ("smartphone", "smartphones", ["mobile", "cell", "handset"]),
}
# Categories that only appear in policies (no model numbers, no troubleshooting).
POLICY_ONLY_CATEGORIES = {
    "footwear": ("pair of shoes", "footwear", ["sneakers", "trainers", "running shoes", "boots"]),
    "clothing": ("garment", "clothing", ["jacket", "jeans", "hoodie", "dress"]),
}

BRANDS = [
    "Kestrel", "Arvona", "Norlake", "Veltro", "Brightwell", "Ostara", "Quillon", "Tamsin",
    "Halvard", "Corvida", "Lumex", "Pellora", "Sundry", "Maravel", "Zenthos", "Obrien",
]

COLOURS = ["graphite", "silver", "midnight blue", "sand", "forest green", "white", "rose gold", "charcoal"]

SPECS = {
    "headphones": [("battery life", "{} hours", (18, 60)), ("driver size", "{} mm", (30, 50)),
                   ("weight", "{} g", (180, 320)), ("charging time", "{} minutes", (60, 180))],
    "laptops": [("screen size", "{} inch", (13, 17)), ("memory", "{} GB", (8, 64)),
                ("battery life", "{} hours", (6, 20)), ("weight", "{} kg", (1, 3))],
    "smartwatches": [("battery life", "{} days", (2, 14)), ("water resistance", "{} m", (30, 100)),
                     ("display size", "{} mm", (38, 49)), ("weight", "{} g", (28, 60))],
    "coffee": [("pump pressure", "{} bar", (9, 19)), ("water tank", "{} ml", (900, 2200)),
               ("heat-up time", "{} seconds", (25, 90)), ("power", "{} W", (1100, 1600))],
    "vacuums": [("suction power", "{} Pa", (2000, 9000)), ("runtime", "{} minutes", (30, 90)),
                ("dust bin", "{} ml", (300, 800)), ("noise level", "{} dB", (55, 78))],
    "televisions": [("screen size", "{} inch", (43, 85)), ("refresh rate", "{} Hz", (60, 144)),
                    ("peak brightness", "{} nits", (400, 1800)), ("HDMI ports", "{}", (2, 4))],
    "phones": [("screen size", "{} inch", (6, 7)), ("storage", "{} GB", (128, 512)),
               ("battery capacity", "{} mAh", (3800, 5500)), ("main camera", "{} MP", (48, 200))],
}

# Troubleshooting issues: (key, categories, doc title, doc symptom, customer paraphrases, cause, fix).
ISSUES = [
    ("battery", {"headphones", "laptops", "smartwatches", "phones", "vacuums"},
     "Battery drains quickly", "the battery drains much faster than the rated runtime",
     ["dies after an hour even after a full top-up", "loses all its juice by lunchtime",
      "won't last the day anymore on one top-up"],
     "a calibration fault in the battery management firmware",
     ("Fully charge the device, then let it run down completely once. Install the latest firmware "
     "from the companion app and disable background features you do not use.")),
    ("pairing", {"headphones", "smartwatches", "televisions"},
     "Bluetooth connection drops", "the Bluetooth connection keeps dropping or pairing fails",
     ["keeps cutting out and won't stay linked to my handset", "disconnects from my mobile every few minutes",
      "can't be found by my mobile anymore"],
     "a corrupted pairing record on one of the two devices",
     ("Forget the device in your phone's Bluetooth settings, hold the power button for ten seconds "
     "to clear stored pairings, then pair again within one metre of the phone.")),
    ("power", {"headphones", "laptops", "smartwatches", "coffee", "vacuums", "televisions", "phones"},
     "Device does not turn on", "the device does not power on and no indicator light appears",
     ["is completely dead, nothing happens whatever I push", "won't start at all, no lights",
      "shows no sign of life"],
     "a deeply discharged battery or a tripped internal fuse",
     ("Connect the original charger or power cable for thirty minutes, then hold the power button for "
     "fifteen seconds. Try a different wall socket before requesting a repair.")),
    ("overheat", {"laptops", "phones", "televisions", "vacuums"},
     "Overheating and automatic shutdown", "the unit gets hot and shuts itself down",
     ["gets scorching and switches itself off", "is burning hot to the touch and then cuts out",
      "runs really warm and then powers down on its own"],
     "blocked air vents or a fan that has stopped spinning",
     ("Keep the vents clear, use the device on a hard flat surface and clean dust from the intake. "
     "Update the firmware so the fan curve is current.")),
    ("leak", {"coffee"},
     "Water leaking from the base", "water collects under the machine or leaks from the base",
     ["leaves a puddle on the counter", "is dripping all over my kitchen worktop",
      "has liquid pooling underneath it"],
     "a worn drip tray seal or a tank that is not seated correctly",
     ("Empty and reseat the water tank until it clicks, check the drip tray seal for cracks and "
     "descale the machine. A cracked seal is replaced free under warranty.")),
    ("noise", {"coffee", "vacuums"},
     "Loud grinding or rattling noise", "the motor makes a loud grinding or rattling noise",
     ["sounds like it's chewing gravel", "is making a horrible racket", "started clanking and screeching"],
     "a foreign object in the grinder or brush roll, or a worn bearing",
     ("Unplug the unit, remove the brush roll or bean hopper and clear any debris. If the noise "
     "continues the bearing needs replacing by an authorised service centre.")),
    ("suction", {"vacuums"},
     "Weak suction", "suction is weak and the cleaner leaves dirt behind",
     ["barely picks anything up off the carpet", "just pushes crumbs around the floor",
      "isn't sucking up dust like it used to"],
     "a full dust bin, a clogged filter or a blockage in the wand",
     ("Empty the bin, wash the filter and let it dry for 24 hours, then check the wand and hose "
     "for blockages.")),
    ("screen", {"laptops", "televisions", "phones", "smartwatches"},
     "Display flickers or stays black", "the display flickers, shows lines or stays black",
     ["picture keeps strobing with stripes across it", "has a blank dark panel but I can hear sound",
      "shows weird flashing bars"],
     "a loose display cable or a graphics driver fault",
     ("Restart the device, update the graphics firmware and lower the refresh rate. If lines stay "
     "visible on the start-up logo the panel is faulty and should be sent for repair.")),
    ("update", {"laptops", "smartwatches", "televisions", "phones", "headphones"},
     "Firmware update fails", "a firmware update fails or stops partway through",
     ["got stuck halfway through installing new software", "won't finish upgrading its system",
      "keeps refusing the newest software version"],
     "an interrupted download or too little free storage",
     ("Charge to at least 50 percent, connect to a stable network, free some storage and start the "
     "update again from the settings menu.")),
    ("heat", {"coffee"},
     "Coffee not hot enough", "coffee comes out lukewarm",
     ["makes drinks that are barely warm", "pours out tepid espresso", "brews cold-ish drinks"],
     "scale build-up on the heating element",
     ("Run the descaling programme with the supplied solution, preheat the cups and set the "
     "temperature to high in the settings menu.")),
]

# How-to guides, one per (topic, category): near-duplicates across categories by design.
GUIDES = [
    ("clean", "How to clean and care for your {noun}",
     ("Regular cleaning keeps your {noun} working well. Unplug it first and wipe the outside with a "
     "soft, slightly damp microfibre cloth. Never use bleach, abrasive pads or solvents. {extra} "
     "Let every part dry completely before reassembling. Cleaning does not affect your warranty."),
     ["what's the best way to keep my {syn} spotless", "how should I wash my {syn} without ruining it",
      "tips for getting grime off my {syn}"]),
    ("setup", "Setting up your new {noun}",
     ("Unbox the {noun} and remove all protective film. Charge or plug it in, then download the "
     "companion app and create an account. {extra} The setup wizard installs the latest firmware "
     "and registers the product for warranty automatically."),
     ["just got my {syn} out of the box, what do I do first", "first steps after buying a {syn}",
      "how do I get my brand new {syn} going"]),
    ("recycle", "Recycling and trade-in for old {plural}",
     ("When you replace a {noun} you can trade in the old one for store credit or recycle it free of "
     "charge. {extra} Wipe personal data first. Trade-in value depends on condition and age; a "
     "quote appears in the app before you ship."),
     ["what can I do with my old {syn} I don't use", "can you take my broken {syn} off my hands",
      "get money for an ancient {syn}"]),
]
GUIDE_EXTRA = {
    "headphones": "Remove the ear cushions and clean the mesh with a dry brush.",
    "laptops": "Blow dust out of the keyboard with compressed air.",
    "smartwatches": "Rinse the strap in fresh water after swimming.",
    "coffee": "Descale monthly and wash the milk frother after every use.",
    "vacuums": "Wash the filter every month and untangle hair from the brush roll.",
    "televisions": "Clean the screen only with a dry cloth, never spray liquid on it.",
    "phones": "Clean the charging port gently with a wooden toothpick.",
}

ORDER_STATUSES = [
    ("Payment review", "we are verifying the payment method before the order is released to the warehouse"),
    ("Awaiting stock", "at least one item is backordered and the order ships when stock arrives"),
    ("Picking", "the warehouse team is collecting the items from the shelves"),
    ("Packed", "the parcel is sealed and waiting for the carrier"),
    ("Handed to carrier", "the carrier has scanned the parcel and tracking becomes active within 24 hours"),
    ("In transit", "the parcel is moving through the carrier network"),
    ("Customs hold", "the parcel is held at customs until duties are paid or documents are checked"),
    ("Delivery exception", "the carrier could not deliver and will try again or leave a notice"),
    ("Delivered", "the carrier confirmed delivery at the shipping address"),
    ("Return in progress", "a return label was issued and we are waiting for the item to come back"),
    ("Refund pending", "the returned item passed inspection and the refund is being processed"),
    ("Cancelled", "the order was cancelled and any authorised payment is released"),
]

TIME_AGO = ["two weeks ago", "last month", "about three weeks back", "ten days ago", "a few days ago"]
