// A first typed session: register, list products, order one. Copied into a fresh client project
// and run against a real server by test/client/client-package.test.ts, so it cannot drift.

import type { AppRouter, Order } from "@commerce-backend/client";
import { createTRPCClient, httpBatchLink, TRPCClientError } from "@trpc/client";

export function connect(baseUrl: string, getToken: () => string | undefined = () => undefined) {
  return createTRPCClient<AppRouter>({
    links: [
      httpBatchLink({
        url: `${baseUrl}/trpc`,
        headers: () => {
          const token = getToken();
          return token ? { authorization: `Bearer ${token}` } : {};
        },
      }),
    ],
  });
}

export async function firstOrder(baseUrl = "http://127.0.0.1:3000"): Promise<Order> {
  let token: string | undefined;
  const api = connect(baseUrl, () => token);

  const auth = await api.auth.register.mutate({
    email: `shopper-${Date.now()}@example.com`,
    password: "a long and uncommon passphrase",
  });
  token = auth.accessToken;

  const page = await api.products.list.query({ inStock: true, sort: "price_asc", limit: 5 });
  const product = page.items[0];
  if (!product) throw new Error("No product in stock: sign in as admin and create one first");

  try {
    return await api.orders.create.mutate({ items: [{ productId: product.id, quantity: 1 }] });
  } catch (error) {
    // Every error is a tRPC code plus a message a person can act on.
    if (error instanceof TRPCClientError) console.error(error.data?.code, error.message);
    throw error;
  }
}
