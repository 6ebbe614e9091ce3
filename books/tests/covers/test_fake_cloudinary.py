"""The fake checks signatures as Cloudinary does, so passing tests mean correctly signed calls."""

from __future__ import annotations

import cloudinary.exceptions
import cloudinary.uploader
import pytest

from tests.covers.conftest import png_image
from tests.fake_cloudinary import FakeCloudinary, expected_signature


def sdk_options(fake: FakeCloudinary, **overrides: str) -> dict[str, str]:
    options = {
        "cloud_name": fake.cloud_name,
        "api_key": fake.api_key,
        "api_secret": fake.api_secret,
        "upload_prefix": fake.url,
    }
    return options | overrides


class TestSignature:
    def test_matches_cloudinarys_documented_example(self) -> None:
        """The example of Cloudinary's "Generating authentication signatures" guide."""
        params = {
            "eager": "w_400,h_300,c_pad|w_260,h_200,c_crop",
            "public_id": "sample_image",
            "timestamp": "1315060510",
        }
        assert expected_signature(params, "abcd") == "bfd09f95f331f558cbd1320e67aa8d488770583e"

    def test_sdk_calls_with_the_right_secret_pass(self, fake_cloudinary: FakeCloudinary) -> None:
        result = cloudinary.uploader.upload(
            png_image(), public_id="covers/a&b", **sdk_options(fake_cloudinary)
        )
        assert result["public_id"] == "covers/a&b"
        destroyed = cloudinary.uploader.destroy("covers/a&b", **sdk_options(fake_cloudinary))
        assert destroyed == {"result": "ok"}
        assert fake_cloudinary.rejected_signatures == 0

    def test_upload_with_a_wrong_secret_is_rejected(self, fake_cloudinary: FakeCloudinary) -> None:
        options = sdk_options(fake_cloudinary, api_secret="wrong")
        with pytest.raises(cloudinary.exceptions.AuthorizationRequired, match="Signature"):
            cloudinary.uploader.upload(png_image(), public_id="x", **options)
        assert fake_cloudinary.rejected_signatures == 1
        assert fake_cloudinary.uploads == []

    def test_destroy_with_a_wrong_secret_is_rejected(self, fake_cloudinary: FakeCloudinary) -> None:
        cloudinary.uploader.upload(png_image(), public_id="x", **sdk_options(fake_cloudinary))
        options = sdk_options(fake_cloudinary, api_secret="wrong")
        with pytest.raises(cloudinary.exceptions.AuthorizationRequired, match="Signature"):
            cloudinary.uploader.destroy("x", **options)
        assert fake_cloudinary.rejected_signatures == 1
        assert fake_cloudinary.images.keys() == {"x"}
