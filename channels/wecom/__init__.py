"""The WeCom (企业微信) integration: client, sync, callbacks, sender, crypto and simulator."""
