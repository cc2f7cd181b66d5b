"""Helpers of the tests (no tests here): the contract harness, the running stack, the WeChat sandbox app."""
