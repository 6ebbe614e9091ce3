# 1. Create a book
BOOK_RESPONSE=$(curl -s -X POST http://localhost:8001/v1/books \
  -H "Content-Type: application/json" \
  -d '{"title": "Test Book", "author": "Test Author", "description": "A test book description", "price": "19.99"}')

BOOK_ID=$(echo $BOOK_RESPONSE | jq -r '.id')
echo "Created book with ID: $BOOK_ID"

# 2. Create an order with multiple books
ORDER_RESPONSE=$(curl -s -X POST http://localhost:8082/v1/orders \
  -H "Content-Type: application/json" \
  -d "{\"items\": [{\"book_id\": $BOOK_ID, \"quantity\": 2}]}")

ORDER_ID=$(echo $ORDER_RESPONSE | jq -r '.id')
echo "Created order with ID: $ORDER_ID"

# 3. Verify order
curl -s http://localhost:8082/v1/orders/$ORDER_ID | jq '.'
