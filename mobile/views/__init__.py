"""The mobile pages, one module per area: ``auth`` (sign-in, WeCom OAuth), ``today`` (to-dos,
due for repurchase, new contacts), ``code`` (my channel code), ``customers`` (my customers),
``card`` (the customer card and its actions), ``sidebar`` (the WeCom chat sidebar)."""
