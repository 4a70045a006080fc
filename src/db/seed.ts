import { sql } from "drizzle-orm";
import { hashPassword } from "../lib/passwords";
import { sha256Hex } from "../lib/tokens";
import type { Database } from "./client";
import { orderItems, orders, products, users } from "./schema";

/** Stable ids derived from a name, so every seed run targets the same rows (ON CONFLICT DO NOTHING). */
async function stableId(namespace: string, name: string): Promise<string> {
  const hex = await sha256Hex(`${namespace}:${name}`);
  // The version 4 layout: version nibble 4, variant bits 10.
  const variant = ((Number.parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export const CATALOG: ReadonlyArray<{ name: string; description: string; price: string; stock: number }> = [
  { name: "Classic Cotton T-Shirt", description: "Heavyweight 100% cotton tee, pre-shrunk.", price: "19.99", stock: 240 },
  { name: "Slim Fit Chino Trousers", description: "Stretch twill chinos with a tapered leg.", price: "49.00", stock: 120 },
  { name: "Merino Wool Crew Sweater", description: "Fine-gauge merino, machine washable.", price: "89.50", stock: 60 },
  { name: "Waterproof Rain Jacket", description: "Seam-sealed shell with a packable hood.", price: "129.00", stock: 45 },
  { name: "Everyday Canvas Sneakers", description: "Vulcanised rubber sole, organic canvas upper.", price: "59.95", stock: 150 },
  { name: "Leather Chelsea Boots", description: "Full-grain leather with elastic side panels.", price: "179.00", stock: 30 },
  { name: "Wool Blend Beanie", description: "Ribbed knit, one size.", price: "17.50", stock: 300 },
  { name: "Organic Cotton Socks (3 pairs)", description: "Cushioned sole, reinforced heel and toe.", price: "14.99", stock: 500 },
  {
    name: "Stainless Steel Water Bottle 750 ml",
    description: "Double-walled, keeps drinks cold for 24 hours.",
    price: "29.00",
    stock: 210,
  },
  { name: "Ceramic Pour-Over Coffee Dripper", description: "Fits standard #2 filters.", price: "24.00", stock: 80 },
  { name: "Burr Coffee Grinder", description: "40 grind settings, conical steel burrs.", price: "119.00", stock: 25 },
  { name: "Cast Iron Skillet 26 cm", description: "Pre-seasoned, oven safe.", price: "39.90", stock: 70 },
  { name: "Chef's Knife 20 cm", description: "High-carbon stainless steel, full tang.", price: "74.00", stock: 55 },
  { name: "Bamboo Cutting Board", description: "Reversible, with juice groove.", price: "22.50", stock: 130 },
  { name: "Linen Tea Towels (set of 2)", description: "Stonewashed European linen.", price: "18.00", stock: 160 },
  { name: "Glass Meal Prep Containers (5 pack)", description: "Oven and freezer safe, snap-lock lids.", price: "34.99", stock: 90 },
  { name: "Wireless Noise-Cancelling Headphones", description: "30-hour battery, USB-C charging.", price: "249.00", stock: 40 },
  { name: "Bluetooth Portable Speaker", description: "Waterproof IP67, 12-hour playback.", price: "69.00", stock: 85 },
  { name: "USB-C Charging Cable 2 m", description: "Braided, 100 W power delivery.", price: "12.99", stock: 400 },
  { name: "65 W USB-C Wall Charger", description: "Two ports, GaN, foldable plug.", price: "45.00", stock: 110 },
  { name: "Mechanical Keyboard", description: "Hot-swappable switches, PBT keycaps.", price: "139.00", stock: 35 },
  { name: "Ergonomic Wireless Mouse", description: "Silent clicks, 70-day battery.", price: "49.99", stock: 95 },
  { name: "27-inch 4K Monitor", description: "IPS panel, USB-C with 90 W charging.", price: "399.00", stock: 15 },
  { name: "Laptop Stand", description: "Aluminium, adjustable height.", price: "39.00", stock: 75 },
  { name: "Hardcover Notebook A5", description: "Dotted pages, lay-flat binding.", price: "16.00", stock: 260 },
  { name: "Gel Pens (pack of 10)", description: "0.5 mm, quick-drying ink.", price: "9.99", stock: 350 },
  { name: "Desk Lamp with Dimmer", description: "Warm to cool LED, flicker-free.", price: "54.00", stock: 50 },
  { name: "Yoga Mat 6 mm", description: "Non-slip natural rubber.", price: "44.00", stock: 65 },
  { name: "Adjustable Dumbbells 2 x 10 kg", description: "Quick-change plates, steel handles.", price: "89.00", stock: 20 },
  { name: "Running Hydration Vest", description: "Two soft flasks included.", price: "79.00", stock: 28 },
  { name: "Camping Headlamp", description: "400 lumens, rechargeable.", price: "32.00", stock: 100 },
  { name: "Two-Person Backpacking Tent", description: "Freestanding, 1.6 kg.", price: "289.00", stock: 12 },
  { name: "Insulated Travel Mug", description: "Leak-proof lid, 350 ml.", price: "21.00", stock: 140 },
  { name: "Scented Soy Candle", description: "Cedar and bergamot, 40-hour burn.", price: "26.00", stock: 0 },
  { name: "Indoor Plant Pot 20 cm", description: "Glazed stoneware with drainage hole.", price: "27.50", stock: 3 },
  { name: "Board Game: Strategy Classic", description: "2 to 4 players, ages 10 and up.", price: "42.00", stock: 4 },
];

/** Loads the sample catalog. Safe to run any number of times: existing rows are left alone. */
export async function seedCatalog(db: Database): Promise<{ inserted: number }> {
  const rows = await Promise.all(CATALOG.map(async (p) => ({ id: await stableId("product", p.name), ...p })));
  const inserted = await db.insert(products).values(rows).onConflictDoNothing().returning({ id: products.id });
  return { inserted: inserted.length };
}

export const DEV_CUSTOMERS = ["alice@example.com", "bob@example.com", "carol@example.com"] as const;
export const DEV_PASSWORD = "password123";

/**
 * Development data: three customers with a few orders. Rows have stable ids, so a second run
 * inserts nothing; the orders are history, so stock is not touched.
 */
export async function seedDevData(db: Database): Promise<{ users: number; orders: number }> {
  await seedCatalog(db);
  const passwordHash = await hashPassword(DEV_PASSWORD);
  const insertedUsers = await db
    .insert(users)
    .values(await Promise.all(DEV_CUSTOMERS.map(async (email) => ({ id: await stableId("user", email), email, passwordHash }))))
    .onConflictDoNothing()
    .returning({ id: users.id });
  let orderCount = 0;
  for (const [u, email] of DEV_CUSTOMERS.entries()) {
    const userId = await stableId("user", email);
    for (let n = 0; n < 2; n++) {
      const lines = [CATALOG[(u * 5 + n * 3) % CATALOG.length], CATALOG[(u * 7 + n * 2 + 1) % CATALOG.length]];
      const orderId = await stableId("order", `${email}:${n}`);
      await db.transaction(async (tx) => {
        const [order] = await tx
          .insert(orders)
          .values({
            id: orderId,
            userId,
            status: n === 0 ? "delivered" : "pending",
            total: sql`${lines[0].price}::numeric + ${lines[1].price}::numeric * 2`,
          })
          .onConflictDoNothing()
          .returning({ id: orders.id });
        if (!order) return;
        orderCount++;
        await tx.insert(orderItems).values([
          {
            id: await stableId("item", `${orderId}:0`),
            orderId,
            productId: await stableId("product", lines[0].name),
            quantity: 1,
            price: lines[0].price,
          },
          {
            id: await stableId("item", `${orderId}:1`),
            orderId,
            productId: await stableId("product", lines[1].name),
            quantity: 2,
            price: lines[1].price,
          },
        ]);
      });
    }
  }
  return { users: insertedUsers.length, orders: orderCount };
}
