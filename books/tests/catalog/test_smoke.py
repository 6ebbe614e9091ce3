async def test_create_and_get(client, make_book):
    book = await make_book()
    r = await client.get(f"/v1/books/{book['id']}")
    assert r.status_code == 200
    print(r.json())
    r = await client.get("/v1/books")
    print(r.headers, r.json())
