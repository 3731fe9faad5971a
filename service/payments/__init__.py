"""Ways to pay: how a merchant saves a way to pay (a link of ours that opens a Stripe Checkout
page in setup mode), manages it (the Stripe customer portal), what we know of it (the card its
invoices are charged to, from Stripe's events), and the payment terms that decide whether an
invoice is charged or sent. Stripe itself is reached through ``HostedPages`` (implemented in
``webhooks``) and the outbox."""
