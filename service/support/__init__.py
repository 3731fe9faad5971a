"""Support: staff with the ``support:read`` scope look a merchant up and see what it is billed
and why — through the API (``?merchant_id=`` on the merchant's reads) and the support view on
the finance page's session. Every look at a merchant is audited."""
