// Paygentic's "Complete Integration Example" (../shared/seeds/001), run against this platform.
//
// The class CodeExecutionService below is the guide's, unchanged but for its base addresses
// (https://api.paygentic.io and https://edge-api.paygentic.io -> API_BASE and EDGE_API_BASE).
// What the guide leaves to the merchant's own application (its user store, its code runner, the
// payment redirect, its /billing-portal route) is the driver at the end of this file.
//
// Environment: API_BASE, EDGE_API_BASE, PAYGENTIC_MERCHANT_ID, PAYGENTIC_API_KEY,
// PAYGENTIC_PLAN_ID, PAYGENTIC_BILLABLE_METRIC_ID. Prints one JSON line of what it saw; exits 1
// with the reason at the first step that does not behave as the guide says.

const API_BASE = process.env.API_BASE;
const EDGE_API_BASE = process.env.EDGE_API_BASE || API_BASE;

// ---- the guide's class (base addresses changed, nothing else) ----
class CodeExecutionService {
  constructor() {
    this.merchantId = process.env.PAYGENTIC_MERCHANT_ID;
    this.apiKey = process.env.PAYGENTIC_API_KEY;
    this.planId = process.env.PAYGENTIC_PLAN_ID;
    this.metricId = process.env.PAYGENTIC_BILLABLE_METRIC_ID;
  }

  // Called when user signs up
  async onboardUser(userProfile) {
    // 1. Create customer
    const customer = await this.createCustomer(userProfile);

    // 2. Create subscription
    const subscription = await this.createSubscription(customer.customerId);

    // 3. Handle payment if needed
    if (subscription.payment?.checkoutUrl) {
      return {
        requiresPayment: true,
        paymentUrl: subscription.payment.checkoutUrl
      };
    }

    // 4. Store in your database
    await this.saveUserBilling(userProfile.id, {
      customerId: customer.customerId,
      subscriptionId: subscription.id
    });

    return {
      requiresPayment: false,
      customerId: customer.customerId
    };
  }

  // Called for each API request
  async handleCodeExecution(userId, code, language) {
    const billing = await this.getUserBilling(userId);

    try {
      // 1. Pre-authorize payment (optional but recommended)
      const entitlement = await this.createEntitlement(billing.customerId, 1);

      // 2. Execute code
      const result = await this.executeCode(code, language);

      // 3. Report usage
      await this.reportUsage(
        billing.customerId,
        result.executionId,
        entitlement.id
      );

      return result;
    } catch (error) {
      console.error('Execution failed:', error);
      throw error;
    }
  }

  async createCustomer(userProfile) {
    const response = await fetch(`${API_BASE}/v0/customers`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${this.apiKey}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        merchantId: this.merchantId,
        consumer: {
          name: userProfile.name,
          email: userProfile.email,
          phone: userProfile.phone,
          address: userProfile.address
        }
      })
    });

    return response.json();
  }

  async createSubscription(customerId) {
    const response = await fetch(`${API_BASE}/v0/subscriptions`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${this.apiKey}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        customerId: customerId,
        planId: this.planId,
        name: 'Code Execution API Access',
        startedAt: new Date().toISOString(),
        prefundAmount: "10"
      })
    });

    return response.json();
  }

  async createEntitlement(customerId, quantity) {
    const response = await fetch(`${EDGE_API_BASE}/v0/entitlements`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${this.apiKey}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        merchantId: this.merchantId,
        customerId: customerId,
        entitlementData: [{
          billableMetricId: this.metricId,
          quantity: quantity
        }]
      })
    });

    return response.json();
  }

  async reportUsage(customerId, executionId, entitlementId) {
    const response = await fetch(`${EDGE_API_BASE}/v0/usage`, {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${this.apiKey}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({
        idempotencyKey: `${executionId}_${Date.now()}`,
        entitlementId: entitlementId,
        customerId: customerId,
        merchantId: this.merchantId,
        timestamp: new Date().toISOString(),
        properties: [{
          billableMetricId: this.metricId,
          quantity: 1
        }],
        metadata: {
          executionId: executionId
        }
      })
    });

    if (!response.ok) {
      throw new Error(`Usage reporting failed: ${await response.text()}`);
    }

    return response.json();
  }
}

// ---- the guide's portal helper (step "Provide Customer Portal Access"), base address changed ----
async function getPortalLink(subscriptionId) {
  const response = await fetch(
    `${API_BASE}/v0/subscriptions/${subscriptionId}/portal`,
    {
      method: 'POST',
      headers: {
        'Authorization': `Bearer ${process.env.PAYGENTIC_API_KEY}`,
        'Content-Type': 'application/json'
      },
      body: JSON.stringify({})
    }
  );

  const data = await response.json();
  return data.url; // Single-use portal URL
}

// ---- the merchant's own application around it ----
class MerchantApp extends CodeExecutionService {
  constructor() {
    super();
    this.users = new Map();
    this.subscriptions = new Map();
    this.usageResponses = [];
  }
  async createSubscription(customerId) {
    const subscription = await super.createSubscription(customerId);
    this.subscriptions.set(customerId, subscription);
    return subscription;
  }
  async reportUsage(customerId, executionId, entitlementId) {
    const usage = await super.reportUsage(customerId, executionId, entitlementId);
    this.usageResponses.push(usage);
    return usage;
  }
  async saveUserBilling(userId, billing) { this.users.set(userId, billing); }
  async getUserBilling(userId) { return this.users.get(userId); }
  async executeCode(code, language) {
    return { executionId: `exec_${language}_${this.usageResponses.length + 1}`, stdout: `ran ${code.length} bytes` };
  }
}

function fail(step, detail) {
  console.error(`FAILED at ${step}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
  process.exit(1);
}

function cookieHeader(response, jar) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(';');
    const [name, ...rest] = pair.split('=');
    jar.set(name.trim(), rest.join('='));
  }
  return [...jar].map(([name, value]) => `${name}=${value}`).join('; ');
}

// The customer pays the checkout in the sandbox as a browser would: the page, then its test payment.
async function payInSandboxCheckout(checkoutUrl) {
  const jar = new Map();
  const page = await fetch(checkoutUrl);
  if (page.status !== 200) fail('checkout page', `${page.status}`);
  const html = await page.text();
  const form = html.match(/<form method="post" action="([^"]*test-payment)">[\s\S]*?name="csrfmiddlewaretoken" value="([^"]+)"/);
  if (!form) fail('checkout page', 'no test payment form on the sandbox checkout');
  const paid = await fetch(new URL(form[1], checkoutUrl), {
    method: 'POST',
    redirect: 'manual',
    headers: {
      'Content-Type': 'application/x-www-form-urlencoded',
      'Cookie': cookieHeader(page, jar),
      'Referer': checkoutUrl,
      'Origin': new URL(checkoutUrl).origin,
    },
    body: new URLSearchParams({ csrfmiddlewaretoken: form[2] }),
  });
  if (paid.status !== 302) fail('test payment', `${paid.status} ${await paid.text()}`);
}

async function api(path) {
  const response = await fetch(`${API_BASE}${path}`, {
    headers: { 'Authorization': `Bearer ${process.env.PAYGENTIC_API_KEY}` },
  });
  return response.json();
}

const app = new MerchantApp();
const stamp = Date.now();
const profile = {
  id: `user_${stamp}`,
  name: 'Grace Hopper',
  email: `grace+${stamp}@judge.example`,
  phone: '+1 555 0100',
  address: { line1: '1 Compiler Way', city: 'Arlington', state: 'VA', country: 'US', zipCode: '22201' },
};

// Sign-up: a customer and a subscription with a prefund, which asks for payment.
const onboarding = await app.onboardUser(profile);
if (!onboarding.requiresPayment || !onboarding.paymentUrl) fail('onboardUser', onboarding);
// The guide: creating the customer again returns the existing customer id.
const again = await app.createCustomer(profile);
const customerId = again.customerId;
const subscription = app.subscriptions.get(customerId);
if (!subscription || subscription.status !== 'pending_payment') fail('createSubscription', { again, subscription });

// The customer pays the checkout; the merchant stores the billing ids once paid.
await payInSandboxCheckout(onboarding.paymentUrl);
const active = await api(`/v0/subscriptions/${subscription.id}`);
if (active.status !== 'active') fail('subscription after payment', active);
await app.saveUserBilling(profile.id, { customerId, subscriptionId: subscription.id });

// Each API request: an entitlement, the work, the usage.
const result = await app.handleCodeExecution(profile.id, 'print("hello")', 'python');
const usage = app.usageResponses[0];
if (!usage?.id || usage.consumerId !== customerId) fail('reportUsage', usage);
const second = await app.handleCodeExecution(profile.id, 'console.log(1)', 'javascript');

// The merchant's /billing-portal route: a single-use link that opens the portal.
const portalUrl = await getPortalLink(subscription.id);
if (!portalUrl) fail('getPortalLink', 'no url');
const jar = new Map();
const opened = await fetch(portalUrl, { redirect: 'manual' });
if (opened.status !== 302) fail('portal link', `${opened.status}`);
const portalPage = await fetch(new URL(opened.headers.get('location'), portalUrl), {
  headers: { 'Cookie': cookieHeader(opened, jar) },
  redirect: 'manual',
});
const portalHtml = await portalPage.text();
const reopened = await fetch(portalUrl, { redirect: 'manual' });

console.log(JSON.stringify({
  customerId,
  subscriptionId: subscription.id,
  subscriptionStatus: active.status,
  executions: [result.executionId, second.executionId],
  usage: app.usageResponses.map((u) => ({ id: u.id, price: u.billing?.price, balanceAfter: u.settlement?.balanceAfter })),
  portal: { status: portalPage.status, showsCustomer: portalHtml.includes(profile.name) || portalHtml.includes(profile.email), reopenedStatus: reopened.status },
}));
